use super::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 5e-7
}

#[test]
fn original_reproduces_the_published_vectors() {
    // spec/targon.md §5: produced by re-running Targon's own code.
    let a = "The quick brown fox jumps over the lazy dog";
    let b = "The quick brown cat jumps over a lazy dog";
    let (wa, wb) = (original::words(a), original::words(b));
    assert!(close(original::jaro(&wa, &wb), 0.851852), "{}", original::jaro(&wa, &wb));
    assert!(close(original::jaro_winkler(&wa, &wb), 0.962963), "{}", original::jaro_winkler(&wa, &wb));
    let (ca, cb): (Vec<char>, Vec<char>) = ("MARTHA".chars().collect(), "MARHTA".chars().collect());
    assert!(close(original::jaro(&ca, &cb), 0.979167), "{}", original::jaro(&ca, &cb));
    assert!(close(original::jaro_winkler(&ca, &cb), 0.994792), "{}", original::jaro_winkler(&ca, &cb));
}

#[test]
fn standard_matches_textbook_values() {
    assert!(close(jaro_chars("MARTHA", "MARHTA"), 0.944444), "{}", jaro_chars("MARTHA", "MARHTA"));
    assert!(close(jaro_winkler_chars("MARTHA", "MARHTA", 0.1), 0.961111));
    assert!(close(jaro_chars("DWAYNE", "DUANE"), 0.822222));
    assert!(close(jaro_winkler_chars("DWAYNE", "DUANE", 0.1), 0.84));
    assert!(close(jaro_chars("DIXON", "DICKSONX"), 0.766667));
    assert!(close(jaro_winkler_chars("DIXON", "DICKSONX", 0.1), 0.813333));
    assert_eq!(jaro_chars("", ""), 0.0, "jellyfish scores empty input 0");
    assert_eq!(jaro_chars("abc", ""), 0.0);
    assert_eq!(jaro_chars("ab", "ba"), 0.0, "window 0 at length 2: no match");
    assert_eq!(jaro_chars("same", "same"), 1.0);
}

#[test]
fn the_differences_from_the_standard_are_the_documented_ones() {
    // 1. Window: "abcd" vs "dabc" has matches only with the wider 0.75 window.
    let (a, b): (Vec<char>, Vec<char>) = ("abcdef".chars().collect(), "defabc".chars().collect());
    assert!(original::jaro(&a, &b) > jaro(&a, &b));
    // 3. Empty equals empty in the original.
    let empty: [char; 0] = [];
    assert_eq!(original::jaro(&empty, &empty), 1.0);
    // 4. Scale 0.25 with a 4-long prefix gives exactly 1 once Jaro > 0.7.
    let x = words("one two three four five six seven eight");
    let y = words("one two three four nine ten seven eight");
    assert!(jaro(&x, &y) > 0.7);
    assert_eq!(jaro_winkler(&x, &y, 0.25), 1.0);
    assert!(jaro_winkler(&x, &y, 0.1) < 1.0);
    // 5. split(" ") makes empty words from double spaces; split_whitespace does not.
    assert_eq!(original::words("a  b").len(), 3);
    assert_eq!(words("a  b").len(), 2);
}

#[test]
fn winkler_needs_jaro_above_point_seven() {
    let (a, b) = ("abcdxyzuvw", "abcdqrstop");
    let j = jaro_chars(a, b);
    assert!(j <= 0.7, "{j}");
    assert_eq!(jaro_winkler_chars(a, b, 0.25), j);
}

#[test]
fn chunk_rule_passes_copies_and_fails_strangers() {
    let rule = ChunkRule::default();
    let truth: String = (0..140).map(|i| format!("word{} ", i % 37)).collect();
    let same = rule.judge(&truth, &truth);
    assert!(same.verified && same.passed == same.scores.len(), "{same:?}");
    assert_eq!(same.scores.len(), 4, "30 + 50 + 50 + 10 words");

    let stranger: String = (0..140).map(|i| format!("other{i} ")).collect();
    let v = rule.judge(&truth, &stranger);
    assert!(!v.verified && v.passed == 0, "{v:?}");

    // Truncated to the first chunk: later chunks score 0, the response fails.
    let head: String = truth.split_whitespace().take(30).collect::<Vec<_>>().join(" ");
    let v = rule.judge(&truth, &head);
    assert!(!v.verified, "{v:?}");
    assert_eq!(v.scores[1..], [0.0, 0.0, 0.0]);

    // The fix: the original's last-chunk threshold is 0, so garbage there passes; ours needs > 0.5.
    let mut tail_garbage: Vec<String> = truth.split_whitespace().map(str::to_string).collect();
    for w in tail_garbage.iter_mut().skip(130) {
        *w = "zzz".into();
    }
    let v = rule.judge(&truth, &tail_garbage.join(" "));
    assert_eq!(v.passed, 3, "{v:?}");
}

#[test]
fn chunk_rule_tolerates_small_divergence() {
    let rule = ChunkRule::default();
    let truth: String = (0..100).map(|i| format!("w{} ", i)).collect();
    let mut edited: Vec<String> = truth.split_whitespace().map(str::to_string).collect();
    edited[40] = "changed".into();
    edited[75] = "again".into();
    let v = rule.judge(&truth, &edited.join(" "));
    assert!(v.verified, "{v:?}");
    assert!(rule.judge("", "").verified);
    assert!(!rule.judge("", "a long answer to nothing").verified);
}

#[test]
fn truncated_or_padded_answers_fail_the_length_check() {
    let rule = ChunkRule::default();
    let truth: String = (0..20).map(|i| format!("t{i} ")).collect();
    let head: String = (0..8).map(|i| format!("t{i} ")).collect();
    let v = rule.judge(&truth, &head);
    assert!(v.scores[0] > 0.99, "the 0.25 scale lifts a shared prefix: {v:?}");
    assert!(!v.length_ok && !v.verified, "{v:?}");
    let padded = format!("{truth} and then a lot more words that the model would never have written");
    assert!(!rule.judge(&truth, &padded).verified);
    assert!(rule.judge("yes", "yes it is").verified, "short answers: absolute difference");
}
