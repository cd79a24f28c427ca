//! Why a miner's response failed: a closed set of causes, each with a stable name that goes
//! into records, metrics and logs, plus a free-text detail.
//!
//! The names follow the original's (`TOO_SHORT`, `SKIPPED_EOS`, …) where one existed; the
//! transport and stream causes are new (the original turned them all into `None`).
//!
//! Transport failures (connect, deadline, refusal, HTTP status, size, disconnect, malformed
//! answer) are classified once, by the runtime's [`PeerFailure`], the same for every subnet;
//! [`Cause`]'s transport variants are its image (`impl From<&PeerFailure> for Cause`), and
//! [`Failure::peer`] builds a failure from one. The other causes are this subnet's
//! verification verdicts.

use ganglion_neuron::PeerFailure;
use serde::{Deserialize, Serialize};

/// One reason to refuse a response. Ordered roughly from "never got an answer" to
/// "answered, but not with the model's tokens".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Cause {
    /// The TCP connection could not be made (or the axon is not served).
    Connect,
    /// The miner answered with a non-200 status.
    HttpStatus,
    /// The miner's caller policy refused this validator (401/403). Held against the miner
    /// when this validator holds a permit (every miner's default policy admits permitted
    /// validators); otherwise a refusal is the miner's right and does not count.
    Refused,
    /// A deadline passed: connect, first token, idle between chunks, or total.
    Timeout,
    /// The connection broke before the stream ended.
    Disconnect,
    /// The stream exceeded its byte, line or chunk budget.
    TooLarge,
    /// The stream carried bytes that are not UTF-8.
    InvalidUtf8,
    /// The stream is not well-formed OpenAI SSE (bad framing, bad JSON, wrong shapes).
    Malformed,
    /// The miner reported an error object inside the stream.
    MinerError,
    /// The stream looked pre-generated and replayed in a burst.
    BadStream,
    /// No chunk carried a `finish_reason`.
    MissingFinish,
    /// No `usage` object although `stream_options.include_usage` was asked for.
    MissingUsage,
    /// Tokens arrived without `token_id:<id>` although `return_tokens_as_token_ids` was asked for.
    MissingTokenIds,
    /// Token ids outside the vocabulary, or ids that do not decode to the streamed text.
    WrongTokenIds,
    /// Tokens arrived without logprobs although `logprobs` was asked for.
    MissingLogprobs,
    /// Fewer tokens than the minimum.
    TooShort,
    /// More tokens than `max_tokens`.
    TooLong,
    /// `usage` disagrees with the tokens actually streamed (or with the prompt).
    UsageMismatch,
    /// A token the declared sampling could not have produced.
    UnlikelyToken,
    /// Too many unlikely (or non-argmax) tokens to be a sample of the model.
    UnlikelyTokens,
    /// The model would (almost surely) have stopped, but the miner went on.
    SkippedEos,
    /// The miner stopped where the model would not have.
    EarlyEnd,
    /// The logprobs the miner reported disagree with the validator's on average.
    LowAverage,
    /// Ground truth: the text is not similar enough to the validator's regeneration.
    Similarity,
    /// Over many responses, the miner's tokens do not look like fair draws from the requested
    /// distribution (the per-miner accumulation of the verifier's statistics).
    SamplingMismatch,
    /// The same completion as another miner's in the same round, where independent fair
    /// draws would (almost surely) differ: one engine answering for several hotkeys.
    Duplicate,
}

impl Cause {
    /// Every cause, for metrics that list all of them.
    pub const ALL: [Cause; 26] = [
        Cause::Connect,
        Cause::HttpStatus,
        Cause::Refused,
        Cause::Timeout,
        Cause::Disconnect,
        Cause::TooLarge,
        Cause::InvalidUtf8,
        Cause::Malformed,
        Cause::MinerError,
        Cause::BadStream,
        Cause::MissingFinish,
        Cause::MissingUsage,
        Cause::MissingTokenIds,
        Cause::WrongTokenIds,
        Cause::MissingLogprobs,
        Cause::TooShort,
        Cause::TooLong,
        Cause::UsageMismatch,
        Cause::UnlikelyToken,
        Cause::UnlikelyTokens,
        Cause::SkippedEos,
        Cause::EarlyEnd,
        Cause::LowAverage,
        Cause::Similarity,
        Cause::SamplingMismatch,
        Cause::Duplicate,
    ];

    /// The stable name (`TOO_SHORT`, …).
    pub fn name(self) -> &'static str {
        match self {
            Cause::Connect => "CONNECT",
            Cause::HttpStatus => "HTTP_STATUS",
            Cause::Refused => "REFUSED",
            Cause::Timeout => "TIMEOUT",
            Cause::Disconnect => "DISCONNECT",
            Cause::TooLarge => "TOO_LARGE",
            Cause::InvalidUtf8 => "INVALID_UTF8",
            Cause::Malformed => "MALFORMED",
            Cause::MinerError => "MINER_ERROR",
            Cause::BadStream => "BAD_STREAM",
            Cause::MissingFinish => "MISSING_FINISH",
            Cause::MissingUsage => "MISSING_USAGE",
            Cause::MissingTokenIds => "MISSING_TOKEN_IDS",
            Cause::WrongTokenIds => "WRONG_TOKEN_IDS",
            Cause::MissingLogprobs => "MISSING_LOGPROBS",
            Cause::TooShort => "TOO_SHORT",
            Cause::TooLong => "TOO_LONG",
            Cause::UsageMismatch => "USAGE_MISMATCH",
            Cause::UnlikelyToken => "UNLIKELY_TOKEN",
            Cause::UnlikelyTokens => "UNLIKELY_TOKENS",
            Cause::SkippedEos => "SKIPPED_EOS",
            Cause::EarlyEnd => "EARLY_END",
            Cause::LowAverage => "LOW_AVERAGE",
            Cause::Similarity => "SIMILARITY",
            Cause::SamplingMismatch => "SAMPLING_MISMATCH",
            Cause::Duplicate => "DUPLICATE",
        }
    }
}

impl Cause {
    /// Whether a failure with this cause counts against the miner's score, given whether
    /// the validator holds a validator permit (see [`Cause::Refused`]).
    pub fn counts_against_miner(self, permitted: bool) -> bool {
        self != Cause::Refused || permitted
    }
}

impl From<&PeerFailure> for Cause {
    fn from(failure: &PeerFailure) -> Cause {
        match failure {
            PeerFailure::NoAxon | PeerFailure::Connect(_) => Cause::Connect,
            PeerFailure::Timeout { .. } => Cause::Timeout,
            PeerFailure::Refused { .. } => Cause::Refused,
            PeerFailure::Status { .. } => Cause::HttpStatus,
            PeerFailure::Transport(_) => Cause::Disconnect,
            PeerFailure::Malformed(_) => Cause::Malformed,
            PeerFailure::TooLarge { .. } => Cause::TooLarge,
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed response: the cause and what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The cause.
    pub cause: Cause,
    /// One line saying what was observed (position, rank, sizes, …).
    pub detail: String,
}

impl Failure {
    /// A failure with a detail line.
    pub fn new(cause: Cause, detail: impl Into<String>) -> Failure {
        Failure { cause, detail: detail.into() }
    }

    /// A transport failure as the runtime classified it.
    pub fn peer(failure: &PeerFailure) -> Failure {
        Failure::new(Cause::from(failure), failure.to_string())
    }

    /// A transport failure with a detail line of our own (the cause still comes from the
    /// runtime's classification).
    pub fn peer_with(failure: &PeerFailure, detail: impl Into<String>) -> Failure {
        Failure::new(Cause::from(failure), detail)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.cause, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use ganglion_neuron::peer::Deadline;

    use super::*;

    #[test]
    fn transport_causes_follow_the_runtimes_classification() {
        let refused = PeerFailure::from_status(403, br#"{"error":{"code":"caller_denied","reason":"no_validator_permit","message":"x"}}"#);
        assert_eq!(Cause::from(&refused), Cause::Refused);
        assert!(!Cause::from(&refused).counts_against_miner(false));
        assert!(Cause::from(&refused).counts_against_miner(true), "a refusal of a permitted validator counts");
        // A 500 whose text speaks of permits is an HTTP failure, not a refusal.
        assert_eq!(Cause::from(&PeerFailure::from_status(500, b"no validator permit")), Cause::HttpStatus);
        assert_eq!(Cause::from(&PeerFailure::Timeout { deadline: Deadline::FirstByte, limit_ms: 10 }), Cause::Timeout);
        assert_eq!(Cause::from(&PeerFailure::Connect("refused".into())), Cause::Connect);
        assert_eq!(Cause::from(&PeerFailure::Transport("reset".into())), Cause::Disconnect);
        assert_eq!(Cause::from(&PeerFailure::TooLarge { limit: 1 }), Cause::TooLarge);
        assert_eq!(Failure::peer(&PeerFailure::Malformed("x".into())).cause, Cause::Malformed);
    }
}
