//! The two text masks of openvalidators 1.2.0, exactly: the task validator (keywords that
//! belong to another task's answer) and the blacklist (a static phrase, a copy of the prompt,
//! a repeat of an earlier best question or answer). Both are 0/1 and skip normalisation.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Keywords of a summary (`task_validator.py`).
pub const SUMMARY_KEYWORDS: [&str; 4] =
    ["Summary:", "Paraphrase:", "Paraphrasing:", "Paraphrased:"];
/// Keywords of a question.
pub const QUESTION_KEYWORDS: [&str; 3] = ["Question:", "Query:", "Q:"];
/// Keywords of an answer.
pub const ANSWER_KEYWORDS: [&str; 4] = ["Answer:", "Response:", "A:", "Completion:"];

/// The original's static blacklist (`blacklist.py`).
pub const BLACKLISTED_PHRASES: [&str; 1] = ["That is an excellent question."];

/// Best questions and answers remembered by the blacklist, each list (the original's lists
/// grow without bound for the life of the process; here the most recent are kept).
pub const BLACKLIST_MEMORY: usize = 10_000;

/// The task validator: 0 when a completion carries a keyword of another task, else 1.
/// Keywords match case-insensitively anywhere in the completion (so `A:` also matches inside
/// `data:`, as in the original). Step names are `augment`, `followup{k}` and `answer{k}`.
pub fn task_validator(name: &str, completion: &str) -> f64 {
    let lower = completion.to_lowercase();
    let contains = |keywords: &[&str]| keywords.iter().any(|k| lower.contains(&k.to_lowercase()));
    let (has_answer, has_question, has_summary) = (
        contains(&ANSWER_KEYWORDS),
        contains(&QUESTION_KEYWORDS),
        contains(&SUMMARY_KEYWORDS),
    );
    let is_summary = name == "augment";
    let is_question = name.starts_with("followup");
    let is_answer = name.starts_with("answer");
    if (is_summary || is_question) && has_answer {
        return 0.0;
    }
    if (is_summary || is_answer) && has_question {
        return 0.0;
    }
    if !is_summary && has_summary {
        return 0.0;
    }
    1.0
}

/// The blacklist mask and its memory of earlier best questions and answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Blacklist {
    /// Best follow-up questions of earlier steps, oldest first.
    pub questions: VecDeque<String>,
    /// Best answers of earlier steps, oldest first.
    pub answers: VecDeque<String>,
}

impl Blacklist {
    /// 0 for a blacklisted phrase, an earlier best question or answer, or a copy of the
    /// prompt (exact string equality, as the original, with the prompt also taken stripped as
    /// completions are: the augment prompt ends in two newlines, so the original's check
    /// never caught a copy of it, however exact), else 1.
    pub fn reward(&self, prompt: &str, completion: &str) -> f64 {
        if BLACKLISTED_PHRASES.contains(&completion)
            || self.questions.iter().any(|q| q == completion)
            || self.answers.iter().any(|a| a == completion)
            || completion == prompt
            || completion == prompt.trim()
        {
            return 0.0;
        }
        1.0
    }

    /// Remembers a step's best question.
    pub fn add_question(&mut self, best: &str) {
        push_bounded(&mut self.questions, best);
    }

    /// Remembers a step's best answer.
    pub fn add_answer(&mut self, best: &str) {
        push_bounded(&mut self.answers, best);
    }
}

fn push_bounded(list: &mut VecDeque<String>, item: &str) {
    list.push_back(item.to_owned());
    while list.len() > BLACKLIST_MEMORY {
        list.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stripped_copy_of_a_prompt_with_trailing_newlines_is_a_copy() {
        let blacklist = Blacklist::default();
        let prompt = "Bees dance.\n\nSummarize the preceding context in 4 sentences.\n\n";
        // The pipeline strips completions before the masks see them.
        assert_eq!(blacklist.reward(prompt, prompt.trim()), 0.0);
        assert_eq!(blacklist.reward(prompt, "Bees dance to show the way."), 1.0);
    }
}
