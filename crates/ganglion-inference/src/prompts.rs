//! Synthetic prompts: a shipped seed set of instructions and topics (written for this
//! project, public domain; `prompts/*.txt`), combined at random with a persona and today's
//! date, and optionally reworded by the validator's own model so that miners cannot cache
//! answers to a fixed list.
//!
//! With the shared corpus ([`ganglion_corpus`], WordNet's 82,000 noun senses) topics come
//! from it four times in five, some with their definition as context: 60+ instructions ×
//! 82,000 senses × 14 personas is over 70 million prompts before any rewording, so a miner
//! meets the same prompt again about as rarely as it meets the same seed. Without the corpus
//! the seed set's ~3,000 combinations still work (a warning says so).
//!
//! The original drew rows from a 7M-row dataset and had the model turn them into a search
//! query.

use rand::Rng;
use rand::seq::SliceRandom;

use crate::openai::{Endpoint, Message, Prompt, Sampling};

const INSTRUCTIONS: &str = include_str!("prompts/instructions.txt");
const TOPICS: &str = include_str!("prompts/topics.txt");

const PERSONAS: &[&str] = &[
    "a retired teacher who loves gardening",
    "a curious ten-year-old",
    "a nurse working night shifts",
    "a software developer on a lunch break",
    "a farmer planning next season",
    "a university student studying history",
    "a chef who runs a small restaurant",
    "a librarian preparing a workshop",
    "a truck driver listening on a long trip",
    "a musician between rehearsals",
    "a grandparent learning to use a tablet",
    "a journalist checking facts",
    "an engineer who builds bridges",
    "a painter looking for inspiration",
];

fn lines(text: &'static str) -> Vec<&'static str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

/// The seed set, and the corpus when there is one.
#[derive(Debug, Clone)]
pub struct PromptBank {
    instructions: Vec<&'static str>,
    topics: Vec<&'static str>,
    corpus: Option<std::sync::Arc<ganglion_corpus::Corpus>>,
}

impl Default for PromptBank {
    fn default() -> Self {
        PromptBank { instructions: lines(INSTRUCTIONS), topics: lines(TOPICS), corpus: None }
    }
}

/// One drawn prompt before it is shaped for an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptSeed {
    /// The instruction with its topic filled in.
    pub instruction: String,
    /// Who is asking.
    pub persona: &'static str,
    /// Today's date (UTC), `YYYY-MM-DD`.
    pub date: String,
}

impl PromptBank {
    /// Number of instructions.
    pub fn instructions(&self) -> usize {
        self.instructions.len()
    }

    /// Number of topics.
    pub fn topics(&self) -> usize {
        self.topics.len()
    }

    /// The seed set with topics from `corpus` (module doc).
    pub fn with_corpus(corpus: std::sync::Arc<ganglion_corpus::Corpus>) -> PromptBank {
        PromptBank { corpus: Some(corpus), ..PromptBank::default() }
    }

    /// The seed set with the shared corpus if it is installed (a warning otherwise).
    pub fn locate() -> PromptBank {
        match ganglion_corpus::Corpus::locate() {
            Ok(corpus) => {
                tracing::info!(target: "ganglion::inference", dir = %corpus.dir().display(), senses = corpus.entries().len(), "prompt topics from the WordNet corpus");
                PromptBank::with_corpus(std::sync::Arc::new(corpus))
            }
            Err(e) => {
                tracing::warn!(target: "ganglion::inference", "{e}; prompts come from the small shipped seed set, which miners can learn");
                PromptBank::default()
            }
        }
    }

    /// Whether topics come from the corpus.
    pub fn has_corpus(&self) -> bool {
        self.corpus.is_some()
    }

    /// Draws an instruction, topic and persona.
    pub fn draw(&self, rng: &mut impl Rng) -> PromptSeed {
        let instruction = self.instructions.choose(rng).copied().unwrap_or("Explain {topic}.");
        let from_corpus = self.corpus.as_ref().filter(|_| rng.gen_bool(0.8)).and_then(|c| c.draw_noun(rng)).map(|entry| {
            if rng.gen_bool(0.3) { format!("\"{}\" (meaning {})", entry.lemma(), entry.gloss) } else { entry.lemma().to_string() }
        });
        if let Some(topic) = from_corpus {
            let persona = PERSONAS.choose(rng).copied().unwrap_or("a curious reader");
            return PromptSeed { instruction: instruction.replace("{topic}", &topic), persona, date: today() };
        }
        let topic = self.topics.choose(rng).copied().unwrap_or("the weather");
        let persona = PERSONAS.choose(rng).copied().unwrap_or("a curious reader");
        PromptSeed { instruction: instruction.replace("{topic}", topic), persona, date: today() }
    }
}

/// The request that asks the validator's model to reword an instruction (short, warm
/// sampling, its own seed).
pub fn variation_request(seed: &PromptSeed, rng: &mut impl Rng, max_tokens: u32) -> (Prompt, Sampling) {
    let prompt = Prompt::Chat(vec![
        Message {
            role: "system".into(),
            content: "You reword requests. Reply with the reworded request only, in one sentence.".into(),
        },
        Message { role: "user".into(), content: format!("Reword this request, keeping its meaning: {}", seed.instruction) },
    ]);
    let sampling = Sampling { temperature: 0.7, top_p: 0.95, max_tokens, seed: Some(rng.gen_range(1..=1_000_000_000)), ..Sampling::default() };
    (prompt, sampling)
}

/// Accepts a model's rewording if it looks like one: the first non-empty line, without
/// quotes, between 12 and 400 characters, and not a refusal or a copy of the system prompt.
pub fn accept_variation(generated: &str) -> Option<String> {
    let line = generated.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line.trim_matches(|c| c == '"' || c == '\'' || c == '`').trim();
    let lower = line.to_lowercase();
    let suspicious = ["reword", "i cannot", "i can't", "as an ai", "sorry"].iter().any(|w| lower.contains(w));
    (12..=400).contains(&line.chars().count()).then(|| line.to_string()).filter(|_| !suspicious)
}

/// Shapes an instruction into a chat or completion prompt.
pub fn to_prompt(endpoint: Endpoint, seed: &PromptSeed, instruction: &str) -> Prompt {
    let system = format!("You are a helpful assistant. Today is {}. You are talking with {}.", seed.date, seed.persona);
    match endpoint {
        Endpoint::Chat => Prompt::Chat(vec![
            Message { role: "system".into(), content: system },
            Message { role: "user".into(), content: instruction.to_string() },
        ]),
        Endpoint::Completion => Prompt::Text(format!("{system}\n\nQuestion: {instruction}\nAnswer:")),
    }
}

/// Today's UTC date as `YYYY-MM-DD`.
pub fn today() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    civil_date((secs / 86_400) as i64)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_seed_set_is_large_and_well_formed() {
        let bank = PromptBank::default();
        assert!(bank.instructions() >= 60, "{}", bank.instructions());
        assert!(bank.topics() >= 40);
        assert!(bank.instructions.iter().all(|i| i.contains("{topic}")), "every instruction names its topic");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let drawn: std::collections::HashSet<String> = (0..50).map(|_| bank.draw(&mut rng).instruction).collect();
        assert!(drawn.len() > 40, "draws vary: {}", drawn.len());
        assert!(drawn.iter().all(|d| !d.contains('{')));
    }

    #[test]
    fn corpus_topics_make_prompts_rarely_repeat() {
        let Ok(corpus) = ganglion_corpus::Corpus::locate() else {
            assert!(std::env::var("GANGLION_REQUIRE_ALL").as_deref() != Ok("1"), "WordNet is required: run scripts/install-corpus");
            println!("skipped: WordNet is not installed (scripts/install-corpus)");
            return;
        };
        let bank = PromptBank::with_corpus(std::sync::Arc::new(corpus));
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let n = 5000;
        let drawn: std::collections::HashSet<String> = (0..n).map(|_| {
            let s = bank.draw(&mut rng);
            format!("{}|{}", s.instruction, s.persona)
        }).collect();
        // The seed set alone repeats often at 5,000 draws; the corpus almost never.
        assert!(drawn.len() > n * 97 / 100, "{} distinct of {n}", drawn.len());
        let seed_only = PromptBank::default();
        let small: std::collections::HashSet<String> = (0..n).map(|_| {
            let s = seed_only.draw(&mut rng);
            format!("{}|{}", s.instruction, s.persona)
        }).collect();
        assert!(small.len() < drawn.len(), "{} vs {}", small.len(), drawn.len());
    }

    #[test]
    fn variations_are_filtered() {
        assert_eq!(accept_variation("\n  \"Tell me how bees make honey.\"\nmore"), Some("Tell me how bees make honey.".into()));
        assert_eq!(accept_variation("short"), None);
        assert_eq!(accept_variation("Sorry, I cannot help with that request."), None);
        assert_eq!(accept_variation("Reworded request: explain bees"), None);
    }

    #[test]
    fn dates_and_shapes() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(19_723), "2024-01-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        let seed = PromptSeed { instruction: "Explain tides.".into(), persona: "a sailor", date: "2024-01-01".into() };
        match to_prompt(Endpoint::Chat, &seed, "Explain tides.") {
            Prompt::Chat(m) => assert_eq!((m.len(), m[1].content.as_str()), (2, "Explain tides.")),
            Prompt::Text(_) => panic!("chat expected"),
        }
        match to_prompt(Endpoint::Completion, &seed, "Explain tides.") {
            Prompt::Text(t) => assert!(t.ends_with("Question: Explain tides.\nAnswer:") && t.contains("2024-01-01")),
            Prompt::Chat(_) => panic!("text expected"),
        }
    }
}
