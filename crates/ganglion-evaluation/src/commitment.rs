//! The on-chain model identity: `namespace:name:commit:hash:competition_id`, as the
//! finetuning subnet (`model/data.py`) and taoverse (`ModelId.to_compressed_str` /
//! `from_compressed_str`) write it.
//!
//! - The literal `None` in a field means null (Python's `str(None)`).
//! - A 4-field string (`namespace:name:commit:hash`) is the legacy form from before
//!   competitions: it belongs to the default competition ([`LEGACY_COMPETITION`], `m1`).
//! - The whole string is at most [`MAX_COMMITMENT_BYTES`] (128) bytes, the chain's limit.
//!
//! The original split on `:` and indexed: extra fields were ignored and an empty namespace
//! accepted, and a 3-field string raised `IndexError` deep in the updater. Here every such
//! string is a typed [`CommitmentError`].

use serde::{Deserialize, Serialize};

/// The chain's limit on a commitment, in bytes.
pub const MAX_COMMITMENT_BYTES: usize = 128;
/// A git commit id is 40 hex characters.
pub const GIT_COMMIT_LENGTH: usize = 40;
/// A base64 SHA-256 is 44 characters.
pub const SHA256_BASE64_LENGTH: usize = 44;
/// Competition ids are one or two characters (`m1`, `l3`, `s1`; taoverse's `0`, `1`…).
pub const MAX_COMPETITION_ID_LENGTH: usize = 2;
/// The longest `namespace/name` that still fits a full commitment (taoverse's
/// `ModelId.MAX_REPO_ID_LENGTH`): 128 − 40 − 44 − 2 − 4 separators = 38.
pub const MAX_REPO_ID_LENGTH: usize =
    MAX_COMMITMENT_BYTES - GIT_COMMIT_LENGTH - SHA256_BASE64_LENGTH - MAX_COMPETITION_ID_LENGTH - 4;
/// The competition of a 4-field (pre-competition) commitment in the finetuning subnet.
pub const LEGACY_COMPETITION: &str = "m1";

/// Why a commitment string is not a model identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitmentError {
    /// Longer than the chain allows.
    #[error("the commitment is {0} bytes; the chain allows at most {MAX_COMMITMENT_BYTES}")]
    TooLong(usize),
    /// Not 4 or 5 `:`-separated fields.
    #[error("the commitment has {0} `:`-separated fields; expected namespace:name:commit:hash[:competition_id]")]
    FieldCount(usize),
    /// The namespace or name is empty, `None`, or holds a character a repository id cannot.
    #[error("the {field} `{value}` is not a repository name (letters, digits, `-`, `_`, `.`)")]
    BadName {
        /// `namespace` or `name`.
        field: &'static str,
        /// What was found.
        value: String,
    },
    /// The competition id is empty or longer than two characters, or not alphanumeric.
    #[error("the competition id `{0}` must be 1–{MAX_COMPETITION_ID_LENGTH} letters or digits")]
    BadCompetition(String),
    /// The commit or hash field is empty, or holds a character outside printable ASCII.
    #[error("the {field} field `{value}` is empty or not printable ASCII")]
    BadField {
        /// `commit` or `hash`.
        field: &'static str,
        /// What was found.
        value: String,
    },
}

/// A model identity as committed on chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelCommitment {
    /// Owner (a Hugging Face user or organisation, or the miner's own namespace).
    pub namespace: String,
    /// Repository name.
    pub name: String,
    /// Revision (a git commit on the Hub; the directory hash for miner-served stores), or null.
    pub commit: Option<String>,
    /// The directory hash, plain or bound to the hotkey ([`crate::dirhash::bind_to_hotkey`]), or null.
    pub hash: Option<String>,
    /// The competition; `None` for a 4-field legacy commitment (see [`ModelCommitment::competition`]).
    pub competition_id: Option<String>,
}

fn null_or(field: &str) -> Option<String> {
    (field != "None").then(|| field.to_string())
}

fn check_name(field: &'static str, value: &str) -> Result<(), CommitmentError> {
    let ok = !value.is_empty()
        && value != "None"
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(CommitmentError::BadName { field, value: value.to_string() }) }
}

fn check_field(field: &'static str, value: &Option<String>) -> Result<(), CommitmentError> {
    match value {
        Some(v) if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic() && b != b':') => {
            Err(CommitmentError::BadField { field, value: v.clone() })
        }
        _ => Ok(()),
    }
}

fn check_competition(id: &str) -> Result<(), CommitmentError> {
    if id.is_empty() || id.len() > MAX_COMPETITION_ID_LENGTH || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(CommitmentError::BadCompetition(id.to_string()));
    }
    Ok(())
}

impl ModelCommitment {
    /// Parses a commitment string read from the chain.
    pub fn parse(s: &str) -> Result<Self, CommitmentError> {
        if s.len() > MAX_COMMITMENT_BYTES {
            return Err(CommitmentError::TooLong(s.len()));
        }
        let fields: Vec<&str> = s.split(':').collect();
        if !(4..=5).contains(&fields.len()) {
            return Err(CommitmentError::FieldCount(fields.len()));
        }
        check_name("namespace", fields[0])?;
        check_name("name", fields[1])?;
        let competition_id = match fields.get(4) {
            Some(&id) => null_or(id),
            None => None,
        };
        if let Some(id) = &competition_id {
            check_competition(id)?;
        }
        let out = ModelCommitment {
            namespace: fields[0].to_string(),
            name: fields[1].to_string(),
            commit: null_or(fields[2]),
            hash: null_or(fields[3]),
            competition_id,
        };
        check_field("commit", &out.commit)?;
        check_field("hash", &out.hash)?;
        Ok(out)
    }

    /// The 5-field string (`None` for nulls), checked against the same rules as [`ModelCommitment::parse`].
    pub fn render(&self) -> Result<String, CommitmentError> {
        check_name("namespace", &self.namespace)?;
        check_name("name", &self.name)?;
        check_field("commit", &self.commit)?;
        check_field("hash", &self.hash)?;
        if let Some(id) = &self.competition_id {
            check_competition(id)?;
        }
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "None".to_string());
        let s = format!(
            "{}:{}:{}:{}:{}",
            self.namespace,
            self.name,
            or_none(&self.commit),
            or_none(&self.hash),
            or_none(&self.competition_id)
        );
        if s.len() > MAX_COMMITMENT_BYTES {
            return Err(CommitmentError::TooLong(s.len()));
        }
        Ok(s)
    }

    /// The competition this model enters: its id, or [`LEGACY_COMPETITION`] for a legacy commitment.
    pub fn competition(&self) -> &str {
        self.competition_id.as_deref().unwrap_or(LEGACY_COMPETITION)
    }

    /// `namespace/name`.
    pub fn repo_id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_five_and_four_field_forms() {
        let c = ModelCommitment::parse("Nous:fine:0123abc:aGFzaA==:l3").unwrap();
        assert_eq!(c.repo_id(), "Nous/fine");
        assert_eq!(c.commit.as_deref(), Some("0123abc"));
        assert_eq!(c.hash.as_deref(), Some("aGFzaA=="));
        assert_eq!(c.competition(), "l3");
        let legacy = ModelCommitment::parse("Nous:fine:0123abc:aGFzaA==").unwrap();
        assert_eq!(legacy.competition_id, None);
        assert_eq!(legacy.competition(), LEGACY_COMPETITION);
        let nulls = ModelCommitment::parse("a:b:None:None:None").unwrap();
        assert_eq!((nulls.commit, nulls.hash, nulls.competition_id), (None, None, None));
    }

    #[test]
    fn render_round_trips_and_keeps_nulls() {
        let c = ModelCommitment {
            namespace: "ns".into(),
            name: "m.v2".into(),
            commit: None,
            hash: Some("x+/=".into()),
            competition_id: Some("1".into()),
        };
        let s = c.render().unwrap();
        assert_eq!(s, "ns:m.v2:None:x+/=:1");
        assert_eq!(ModelCommitment::parse(&s).unwrap(), c);
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        type Check = fn(&CommitmentError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("a:b:c", |e| matches!(e, CommitmentError::FieldCount(3))),
            ("a:b:c:d:e:f", |e| matches!(e, CommitmentError::FieldCount(6))),
            (":b:c:d:e", |e| matches!(e, CommitmentError::BadName { field: "namespace", .. })),
            ("a:b c:c:d:e", |e| matches!(e, CommitmentError::BadName { field: "name", .. })),
            ("a:b:c:d:abc", |e| matches!(e, CommitmentError::BadCompetition(_))),
            ("a:b::d:e", |e| matches!(e, CommitmentError::BadField { field: "commit", .. })),
            ("a:b:c:d\u{7f}:e", |e| matches!(e, CommitmentError::BadField { field: "hash", .. })),
        ];
        for (s, ok) in cases {
            let err = ModelCommitment::parse(s).unwrap_err();
            assert!(ok(&err), "{s}: {err}");
        }
        let long = format!("a:{}:c:d:e", "n".repeat(130));
        assert_eq!(ModelCommitment::parse(&long).unwrap_err(), CommitmentError::TooLong(long.len()));
    }

    #[test]
    fn the_longest_repo_id_fits_a_full_commitment() {
        assert_eq!(MAX_REPO_ID_LENGTH, 38);
        // namespace/name of 38 characters is 37 characters of names (the `/` is a `:` on chain).
        let c = ModelCommitment {
            namespace: "n".repeat(18),
            name: "m".repeat(19),
            commit: Some("f".repeat(GIT_COMMIT_LENGTH)),
            hash: Some("h".repeat(SHA256_BASE64_LENGTH)),
            competition_id: Some("l3".into()),
        };
        assert_eq!(c.render().unwrap().len(), MAX_COMMITMENT_BYTES - 1);
        let longer = ModelCommitment { name: "m".repeat(21), ..c };
        assert!(matches!(longer.render(), Err(CommitmentError::TooLong(129))));
    }
}
