//! The crate's typed error. Every message says what was wrong and what to do about it.

use std::path::PathBuf;

/// Result alias for this crate.
pub type CoreResult<T> = Result<T, CoreError>;

/// Everything that can go wrong with keys, keyfiles and wallets.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// An SS58 address could not be decoded.
    #[error("invalid SS58 address {address:?}: {reason}")]
    InvalidSs58 {
        /// The offending input (truncated to a sane length).
        address: String,
        /// What exactly is wrong with it.
        reason: &'static str,
    },
    /// A hex string (key, seed, signature) was malformed.
    #[error("invalid hex for {what}: {reason} (expected 0x followed by {expected_len} hex digits)")]
    InvalidHex {
        /// What the hex was supposed to be.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
        /// The number of hex digits expected.
        expected_len: usize,
    },
    /// A BIP39 mnemonic was not valid.
    #[error("invalid mnemonic: {0} (expected 12, 15, 18, 21 or 24 English BIP39 words)")]
    InvalidMnemonic(String),
    /// A secret URI (`//Alice`, `phrase//hard/soft///pw`) was malformed.
    #[error("invalid secret URI: {0}")]
    InvalidUri(String),
    /// A key was malformed (wrong length, not a valid curve point, …).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A signature was malformed.
    #[error("invalid signature: {0}")]
    InvalidSignature(String),
    /// A keyfile could not be parsed.
    #[error("keyfile {path} is corrupt: {reason}")]
    CorruptKeyfile {
        /// The keyfile.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A keyfile is in a legacy encrypted format Ganglion reads no more.
    #[error(
        "keyfile {path} is encrypted with the legacy {format} format, which Ganglion does not decrypt; \
         regenerate it from its mnemonic (`ganglion wallet regen-coldkey --mnemonic …`) or re-encrypt it \
         with a current btcli (`btcli wallet update`)"
    )]
    LegacyKeyfile {
        /// The keyfile.
        path: PathBuf,
        /// The format's name (`ansible-vault`, `legacy fernet`).
        format: &'static str,
    },
    /// Decryption failed: the password is wrong or the file was tampered with.
    #[error("could not decrypt {path}: wrong password, or the file is damaged")]
    WrongPassword {
        /// The keyfile.
        path: PathBuf,
    },
    /// A keyfile needs a password and none could be obtained.
    #[error("{0}")]
    PasswordUnavailable(String),
    /// A key file that was asked for does not exist.
    #[error("{what} not found at {path}: {hint}")]
    KeyNotFound {
        /// Which key (`coldkey`, `hotkey 'default'`).
        what: String,
        /// Where it was looked for.
        path: PathBuf,
        /// What to do.
        hint: &'static str,
    },
    /// A key file exists and would be overwritten.
    #[error("{path} already exists; pass --overwrite to replace it (the old key is lost unless you have its mnemonic)")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A wallet or hotkey name is not a plain file name.
    #[error("invalid {what} name {name:?}: use letters, digits, '-', '_' or '.', not a path")]
    InvalidName {
        /// `wallet` or `hotkey`.
        what: &'static str,
        /// The rejected name.
        name: String,
    },
    /// The keypair holds only a public key and cannot sign.
    #[error("this key has no secret (public-key-only {0}); it can verify but not sign")]
    PublicOnly(&'static str),
    /// Filesystem error with the path it happened on.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`reading`, `writing`, …).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl CoreError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CoreError::Io { action, path: path.into(), source }
    }
}
