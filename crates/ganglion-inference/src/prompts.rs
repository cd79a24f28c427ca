//! Synthetic prompts: a shipped seed set of instructions and topics (written for this
//! project, public domain; `prompts/*.txt`), combined at random with a persona and today's
//! date, and optionally reworded by the validator's own model so that miners cannot cache
//! answers to a fixed list.
//!
//! The original drew rows from a 7M-row dataset and had the model turn them into a search
//! query; a seed set plus model variation gives the same unpredictability without a dataset.

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

/// The seed set.
#[derive(Debug, Clone)]
pub struct PromptBank {
    instructions: Vec<&'static str>,
    topics: Vec<&'static str>,
}

impl Default for PromptBank {
    fn default() -> Self {
        PromptBank { instructions: lines(INSTRUCTIONS), topics: lines(TOPICS) }
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

    /// Draws an instruction, topic and persona.
    pub fn draw(&self, rng: &mut impl Rng) -> PromptSeed {
        let instruction = self.instructions.choose(rng).copied().unwrap_or("Explain {topic}.");
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
