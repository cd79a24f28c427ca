//! The project's one shared text corpus: Princeton WordNet 3.0, as Debian's `wordnet-base`
//! package installs it (`scripts/install-corpus`; `/usr/share/wordnet`). Its license (the
//! WordNet 3.0 license) allows use, copying, modification and distribution for any purpose
//! with the copyright notice kept; it is available from a package registry on every machine
//! this project supports, and it is text written by people, not by a model.
//!
//! What it gives: ~117,000 senses (synsets), each with its words, a gloss (definition) and
//! often example sentences. Validators draw from it
//! - **prompt topics** for the inference subnet — 82,000 noun senses times the instruction
//!   templates and personas make a prompt space far larger than any cache;
//! - **evaluation text** and **contexts** for the model-evaluation and reward-pipeline
//!   validators ([`Entry::passage`]).
//!
//! Only the `data.*` files are read (the index files are not needed to enumerate senses).
//! Reads are bounded; a malformed line is skipped, not fatal, and counted.

use std::path::{Path, PathBuf};

use rand::Rng;

/// Part of speech of a sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pos {
    /// Noun.
    Noun,
    /// Verb.
    Verb,
    /// Adjective (including satellites).
    Adjective,
    /// Adverb.
    Adverb,
}

impl Pos {
    /// Every part of speech, with the data file it lives in.
    pub const FILES: [(Pos, &'static str); 4] = [(Pos::Noun, "data.noun"), (Pos::Verb, "data.verb"), (Pos::Adjective, "data.adj"), (Pos::Adverb, "data.adv")];
}

/// One sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Part of speech.
    pub pos: Pos,
    /// Its words, spaces restored (`"physical entity"`).
    pub words: Vec<String>,
    /// The definition.
    pub gloss: String,
    /// Example sentences (without quotes).
    pub examples: Vec<String>,
}

impl Entry {
    /// The first word.
    pub fn lemma(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    /// A short passage of natural text about the sense: "lighthouse (also beacon): a tower
    /// with a light that gives warning of shoals to passing ships. Example: …".
    pub fn passage(&self) -> String {
        let mut out = self.lemma().to_string();
        if self.words.len() > 1 {
            out.push_str(&format!(" (also {})", self.words[1..].join(", ")));
        }
        out.push_str(": ");
        out.push_str(&self.gloss);
        out.push('.');
        for example in &self.examples {
            out.push_str(&format!(" Example: {example}."));
        }
        out
    }
}

/// What can go wrong loading the corpus.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// No directory with WordNet's data files was found.
    #[error("the WordNet corpus was not found (looked in {looked}); install it with scripts/install-corpus (Debian: apt-get install wordnet-base) or set GANGLION_CORPUS_DIR")]
    NotFound {
        /// Where it looked.
        looked: String,
    },
    /// A data file could not be read.
    #[error("reading {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The files held no usable sense.
    #[error("{dir} has no usable WordNet senses")]
    Empty {
        /// The directory.
        dir: PathBuf,
    },
}

/// The loaded corpus.
#[derive(Debug, Clone)]
pub struct Corpus {
    entries: Vec<Entry>,
    nouns: Vec<usize>,
    skipped: usize,
    dir: PathBuf,
}

/// Largest data file read (data.noun is 15 MB).
const MAX_FILE: u64 = 64 << 20;

impl Corpus {
    /// Where the corpus is looked for, in order: `$GANGLION_CORPUS_DIR`, Debian's
    /// `/usr/share/wordnet`, `~/.ganglion/corpus/wordnet`.
    pub fn candidates() -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(dir) = std::env::var_os("GANGLION_CORPUS_DIR") {
            out.push(PathBuf::from(dir));
        }
        out.push(PathBuf::from("/usr/share/wordnet"));
        if let Some(home) = std::env::var_os("HOME") {
            out.push(PathBuf::from(home).join(".ganglion/corpus/wordnet"));
        }
        out
    }

    /// Loads the corpus from the first of [`Corpus::candidates`] that has `data.noun`.
    pub fn locate() -> Result<Corpus, CorpusError> {
        let candidates = Corpus::candidates();
        match candidates.iter().find(|d| d.join("data.noun").is_file()) {
            Some(dir) => Corpus::load(dir),
            None => Err(CorpusError::NotFound { looked: candidates.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ") }),
        }
    }

    /// Loads every `data.*` file present in `dir`.
    pub fn load(dir: &Path) -> Result<Corpus, CorpusError> {
        let mut entries = Vec::new();
        let mut skipped = 0;
        for (pos, name) in Pos::FILES {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            let read_err = |reason: String| CorpusError::Read { path: path.clone(), reason };
            let len = std::fs::metadata(&path).map_err(|e| read_err(e.to_string()))?.len();
            if len > MAX_FILE {
                return Err(read_err(format!("{len} bytes, more than the {MAX_FILE} allowed")));
            }
            let bytes = std::fs::read(&path).map_err(|e| read_err(e.to_string()))?;
            let text = String::from_utf8_lossy(&bytes);
            for line in text.lines() {
                // The license header's lines start with two spaces.
                if line.starts_with("  ") || line.trim().is_empty() {
                    continue;
                }
                match parse_line(line, pos) {
                    Some(e) => entries.push(e),
                    None => skipped += 1,
                }
            }
        }
        if entries.is_empty() {
            return Err(CorpusError::Empty { dir: dir.to_path_buf() });
        }
        let nouns = entries.iter().enumerate().filter(|(_, e)| e.pos == Pos::Noun).map(|(i, _)| i).collect();
        Ok(Corpus { entries, nouns, skipped, dir: dir.to_path_buf() })
    }

    /// Every sense.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Lines that could not be parsed.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Where it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A uniformly drawn sense.
    pub fn draw<'a>(&'a self, rng: &mut impl Rng) -> &'a Entry {
        &self.entries[rng.gen_range(0..self.entries.len())]
    }

    /// A uniformly drawn noun sense (a prompt topic), if there are nouns.
    pub fn draw_noun<'a>(&'a self, rng: &mut impl Rng) -> Option<&'a Entry> {
        (!self.nouns.is_empty()).then(|| &self.entries[self.nouns[rng.gen_range(0..self.nouns.len())]])
    }
}

/// Parses one data line: `offset lex_filenum ss_type w_cnt(hex) word lex_id … p_cnt … | gloss`.
fn parse_line(line: &str, pos: Pos) -> Option<Entry> {
    let (head, gloss) = line.split_once(" | ")?;
    let mut fields = head.split_whitespace();
    fields.next()?; // offset
    fields.next()?; // lex_filenum
    fields.next()?; // ss_type
    let count = usize::from_str_radix(fields.next()?, 16).ok()?;
    let mut words = Vec::with_capacity(count);
    for _ in 0..count {
        let word = fields.next()?;
        fields.next()?; // lex_id
        // Adjective markers such as `(a)` and `(p)` follow some words.
        let word = word.split('(').next().unwrap_or(word);
        words.push(word.replace('_', " "));
    }
    if words.is_empty() || words.iter().any(String::is_empty) {
        return None;
    }
    let mut definition = Vec::new();
    let mut examples = Vec::new();
    for part in gloss.trim().split("; ") {
        let part = part.trim();
        if part.starts_with('"') {
            let e = part.trim_matches('"').trim();
            if !e.is_empty() {
                examples.push(e.to_string());
            }
        } else if !part.is_empty() {
            definition.push(part);
        }
    }
    let gloss = definition.join("; ");
    (!gloss.is_empty()).then_some(Entry { pos, words, gloss, examples })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "  1 This software and database is being provided to you, the LICENSEE, by\n\
00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ 00002137 n 0000 ~ 04424418 n 0000 | that which is perceived or known or inferred to have its own distinct existence (living or nonliving)  \n\
00002137 03 n 02 abstraction 0 abstract_entity 0 010 @ 00001740 n 0000 | a general concept formed by extracting common features from specific examples  \n\
03665366 06 n 02 lighthouse 0 beacon 0 001 @ 04341686 n 0000 | a tower with a light that gives warning of shoals to passing ships; \"the lighthouse kept its lamp lit\"  \n\
garbage line without a bar\n";

    #[test]
    fn parses_words_glosses_and_examples() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("data.noun"), SAMPLE).unwrap_or_else(|e| panic!("{e}"));
        let corpus = Corpus::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(corpus.entries().len(), 3);
        assert_eq!(corpus.skipped(), 1);
        let light = &corpus.entries()[2];
        assert_eq!(light.words, vec!["lighthouse", "beacon"]);
        assert_eq!(light.gloss, "a tower with a light that gives warning of shoals to passing ships");
        assert_eq!(light.examples, vec!["the lighthouse kept its lamp lit"]);
        assert_eq!(light.passage(), "lighthouse (also beacon): a tower with a light that gives warning of shoals to passing ships. Example: the lighthouse kept its lamp lit.");
        assert_eq!(corpus.entries()[1].words[1], "abstract entity");
        let mut rng = rand::thread_rng();
        assert_eq!(corpus.draw_noun(&mut rng).map(|e| e.pos), Some(Pos::Noun));
    }

    #[test]
    fn missing_corpus_says_how_to_install_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(Corpus::load(dir.path()), Err(CorpusError::Empty { .. })));
        let msg = CorpusError::NotFound { looked: "/x".into() }.to_string();
        assert!(msg.contains("scripts/install-corpus"), "{msg}");
    }

    #[test]
    fn the_installed_wordnet_is_large() {
        // On machines where scripts/install-corpus ran (CI does), the real data loads.
        let Ok(corpus) = Corpus::locate() else {
            assert!(std::env::var("GANGLION_REQUIRE_ALL").as_deref() != Ok("1"), "WordNet is required: run scripts/install-corpus");
            println!("skipped: WordNet is not installed (scripts/install-corpus)");
            return;
        };
        assert!(corpus.entries().len() > 100_000, "{}", corpus.entries().len());
        assert!(corpus.nouns.len() > 80_000, "{}", corpus.nouns.len());
        assert!(corpus.skipped() == 0, "{} lines skipped", corpus.skipped());
    }
}
