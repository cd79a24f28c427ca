//! sr25519 keys exactly as Substrate (and so Bittensor) makes and uses them.
//!
//! - Signing uses the `substrate` signing context, like `sp_core::sr25519::Pair::sign`.
//! - A mnemonic becomes a key through its BIP39 *entropy*:
//!   `mini_secret = PBKDF2-HMAC-SHA512(entropy, "mnemonic" ‖ password, 2048)[..32]`,
//!   expanded in Ed25519 mode (`substrate-bip39`), not through the BIP39 seed.
//! - Secret URIs follow `sp_core::crypto::SecretUri`: `[phrase | 0xseed][//hard | /soft]*[///password]`,
//!   with the development phrase when the phrase is omitted (`//Alice`).
//! - Verification also accepts a signature over `<Bytes>message</Bytes>`, as the reference
//!   (btwallet's `Keypair.verify`) does, because browser wallets wrap what they sign.

use std::fmt;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use schnorrkel::derive::{ChainCode, Derivation};
use schnorrkel::{ExpansionMode, MiniSecretKey, SecretKey};
use zeroize::Zeroizing;

use crate::error::{CoreError, CoreResult};
use crate::ss58;

/// Substrate's signing context for sr25519.
pub const SIGNING_CONTEXT: &[u8] = b"substrate";

/// The phrase Substrate derives `//Alice`, `//Bob`, … from when a URI has no phrase.
pub const DEV_PHRASE: &str = "bottom drive obey lake curtain smoke basket hold race lonely fit walk";

/// A 32-byte sr25519 public key (the account id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Wraps raw bytes. Any 32 bytes are accepted here; verification rejects bytes that
    /// are not a valid Ristretto point.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PublicKey(bytes)
    }

    /// Parses `0x`-prefixed (or bare) hex of 32 bytes.
    pub fn from_hex(text: &str) -> CoreResult<Self> {
        Ok(PublicKey(parse_hex_array("public key", text)?))
    }

    /// Decodes an SS58 address (any prefix).
    pub fn from_ss58(address: &str) -> CoreResult<Self> {
        ss58::decode(address).map(|(_, key)| PublicKey(key))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `0x`-prefixed lowercase hex.
    pub fn to_hex(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }

    /// The SS58 address with Bittensor's prefix (42).
    pub fn to_ss58(&self) -> String {
        ss58::encode(&self.0, ss58::BITTENSOR_PREFIX)
    }

    /// Checks `signature` over `message`, or over `<Bytes>message</Bytes>`.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        self.verifying_key().is_some_and(|key| key.verify(message, signature))
    }

    /// The key decoded for verification, or `None` if the bytes are not a valid Ristretto
    /// point. Decoding costs a point decompression; callers that verify many messages from
    /// the same signer keep the result.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        schnorrkel::PublicKey::from_bytes(&self.0).ok().map(VerifyingKey)
    }
}

/// A public key decoded once for repeated verification (see [`PublicKey::verifying_key`]).
#[derive(Clone, Copy)]
pub struct VerifyingKey(schnorrkel::PublicKey);

impl VerifyingKey {
    /// Checks `signature` over `message`, or over `<Bytes>message</Bytes>` as
    /// substrate-interface and btwallet also accept.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        let Ok(signature) = schnorrkel::Signature::from_bytes(&signature.0) else {
            return false;
        };
        if self.0.verify_simple(SIGNING_CONTEXT, message, &signature).is_ok() {
            return true;
        }
        let mut wrapped = Vec::with_capacity(message.len() + 15);
        wrapped.extend_from_slice(b"<Bytes>");
        wrapped.extend_from_slice(message);
        wrapped.extend_from_slice(b"</Bytes>");
        self.0.verify_simple(SIGNING_CONTEXT, &wrapped, &signature).is_ok()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", PublicKey(self.0.to_bytes()).to_ss58())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_ss58())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_ss58())
    }
}

impl std::str::FromStr for PublicKey {
    type Err = CoreError;

    /// Accepts an SS58 address or `0x` hex.
    fn from_str(text: &str) -> CoreResult<Self> {
        if text.starts_with("0x") { PublicKey::from_hex(text) } else { PublicKey::from_ss58(text) }
    }
}

/// A 64-byte sr25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 64]);

impl Signature {
    /// Wraps raw bytes.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Signature(bytes)
    }

    /// Parses `0x`-prefixed (or bare) hex of 64 bytes.
    pub fn from_hex(text: &str) -> CoreResult<Self> {
        Ok(Signature(parse_hex_array("signature", text)?))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// `0x`-prefixed lowercase hex, the form Epistula and btcli print.
    pub fn to_hex(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

/// An sr25519 keypair, remembering the mini-secret seed and phrase it came from when known
/// (keyfiles store them so that other tools can re-derive the key).
#[derive(Clone)]
pub struct Keypair {
    inner: schnorrkel::Keypair,
    seed: Option<Zeroizing<[u8; 32]>>,
    phrase: Option<Zeroizing<String>>,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        write!(f, "Keypair({})", self.public().to_ss58())
    }
}

impl Keypair {
    /// Generates a fresh key and its BIP39 mnemonic of `words` words (12, 15, 18, 21 or 24).
    pub fn generate(words: usize) -> CoreResult<Keypair> {
        let mnemonic = bip39::Mnemonic::generate_in(bip39::Language::English, words)
            .map_err(|err| CoreError::InvalidMnemonic(err.to_string()))?;
        Keypair::from_phrase(&mnemonic.to_string(), None)
    }

    /// Derives the key of a BIP39 mnemonic exactly as Substrate does (see the module doc).
    pub fn from_phrase(phrase: &str, password: Option<&str>) -> CoreResult<Keypair> {
        let normalized = phrase.split_whitespace().collect::<Vec<_>>().join(" ");
        let mnemonic = bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &normalized)
            .map_err(|err| CoreError::InvalidMnemonic(err.to_string()))?;
        let entropy = Zeroizing::new(mnemonic.to_entropy());
        let seed = mini_secret_from_entropy(&entropy, password.unwrap_or(""))?;
        let mut keypair = Keypair::from_seed(&seed)?;
        keypair.phrase = Some(Zeroizing::new(normalized));
        Ok(keypair)
    }

    /// Builds a key from a 32-byte mini-secret (`secretSeed`), expanded in Ed25519 mode.
    pub fn from_seed(seed: &[u8; 32]) -> CoreResult<Keypair> {
        let mini = MiniSecretKey::from_bytes(seed).map_err(|err| CoreError::InvalidKey(err.to_string()))?;
        Ok(Keypair {
            inner: mini.expand_to_keypair(ExpansionMode::Ed25519),
            seed: Some(Zeroizing::new(*seed)),
            phrase: None,
        })
    }

    /// Builds a key from schnorrkel's 64-byte secret (`key ‖ nonce`, btwallet's `privateKey`).
    pub fn from_secret_bytes(secret: &[u8; 64]) -> CoreResult<Keypair> {
        let secret = SecretKey::from_bytes(secret).map_err(|err| CoreError::InvalidKey(err.to_string()))?;
        Ok(Keypair { inner: secret.to_keypair(), seed: None, phrase: None })
    }

    /// Parses a Substrate secret URI: `//Alice`, `<phrase>//hard/soft///password`, `0x<seed>//x`.
    pub fn from_uri(uri: &str) -> CoreResult<Keypair> {
        let parsed = SecretUri::parse(uri)?;
        let (mut root, seed) = match parsed.phrase.strip_prefix("0x") {
            Some(hex_seed) => {
                let seed: [u8; 32] = parse_hex_array("seed", hex_seed)
                    .map_err(|_| CoreError::InvalidUri("a 0x seed must be 32 bytes of hex".into()))?;
                (Keypair::from_seed(&seed)?, Some(seed))
            }
            None => {
                let root = Keypair::from_phrase(&parsed.phrase, parsed.password.as_deref().map(String::as_str))?;
                let seed = root.seed.as_deref().copied();
                (root, seed)
            }
        };
        if parsed.junctions.is_empty() {
            return Ok(root);
        }
        // Follows sp_core's `derive`: the seed survives only a path of hard junctions.
        let mut secret = root.inner.secret.clone();
        let mut seed = seed;
        for junction in &parsed.junctions {
            match junction {
                Junction::Soft(chain_code) => {
                    secret = secret.derived_key_simple(ChainCode(*chain_code), []).0;
                    seed = None;
                }
                Junction::Hard(chain_code) => {
                    let mini = secret.hard_derive_mini_secret_key(Some(ChainCode(*chain_code)), b"").0;
                    secret = mini.expand(ExpansionMode::Ed25519);
                    seed = seed.map(|_| mini.to_bytes());
                }
            }
        }
        root.inner = secret.to_keypair();
        root.seed = seed.map(Zeroizing::new);
        root.phrase = None;
        Ok(root)
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.inner.public.to_bytes())
    }

    /// Signs `message` with the `substrate` context.
    pub fn sign(&self, message: &[u8]) -> Signature {
        let context = schnorrkel::signing_context(SIGNING_CONTEXT);
        Signature(self.inner.sign(context.bytes(message)).to_bytes())
    }

    /// schnorrkel's 64-byte secret (`key ‖ nonce`), what btwallet stores as `privateKey`.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 64]> {
        Zeroizing::new(self.inner.secret.to_bytes())
    }

    /// The 32-byte mini-secret this key was expanded from, when known.
    pub fn seed(&self) -> Option<&[u8; 32]> {
        self.seed.as_deref()
    }

    /// The mnemonic this key was derived from, when known.
    pub fn phrase(&self) -> Option<&str> {
        self.phrase.as_deref().map(String::as_str)
    }
}

/// `substrate-bip39`'s `mini_secret_from_entropy`.
fn mini_secret_from_entropy(entropy: &[u8], password: &str) -> CoreResult<[u8; 32]> {
    if entropy.len() < 16 || entropy.len() > 32 || !entropy.len().is_multiple_of(4) {
        return Err(CoreError::InvalidMnemonic(format!("entropy of {} bytes", entropy.len())));
    }
    let salt = Zeroizing::new(format!("mnemonic{password}"));
    let mut seed = Zeroizing::new([0u8; 64]);
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(entropy, salt.as_bytes(), 2048, seed.as_mut_slice());
    let mut mini = [0u8; 32];
    mini.copy_from_slice(&seed[..32]);
    Ok(mini)
}

#[derive(Debug, PartialEq, Eq)]
enum Junction {
    Soft([u8; 32]),
    Hard([u8; 32]),
}

impl Junction {
    /// `sp_core::crypto::DeriveJunction::from(&str)`: numbers are SCALE-encoded `u64`,
    /// anything else a SCALE-encoded string; more than 32 bytes are hashed with BLAKE2b-256.
    fn parse(text: &str, hard: bool) -> Junction {
        let encoded: Vec<u8> = match text.parse::<u64>() {
            Ok(number) => number.to_le_bytes().to_vec(),
            Err(_) => {
                let mut out = compact_len(text.len());
                out.extend_from_slice(text.as_bytes());
                out
            }
        };
        let mut chain_code = [0u8; 32];
        if encoded.len() > 32 {
            chain_code.copy_from_slice(&Blake2b::<U32>::digest(&encoded));
        } else {
            chain_code[..encoded.len()].copy_from_slice(&encoded);
        }
        if hard { Junction::Hard(chain_code) } else { Junction::Soft(chain_code) }
    }
}

/// SCALE compact encoding of a length.
fn compact_len(len: usize) -> Vec<u8> {
    let len = len as u64;
    if len < 1 << 6 {
        vec![(len as u8) << 2]
    } else if len < 1 << 14 {
        (((len as u16) << 2) | 0b01).to_le_bytes().to_vec()
    } else if len < 1 << 30 {
        (((len as u32) << 2) | 0b10).to_le_bytes().to_vec()
    } else {
        let bytes = len.to_le_bytes();
        let used = 8 - (len.leading_zeros() / 8) as usize;
        let mut out = vec![(((used - 4) as u8) << 2) | 0b11];
        out.extend_from_slice(&bytes[..used]);
        out
    }
}

struct SecretUri {
    phrase: Zeroizing<String>,
    junctions: Vec<Junction>,
    password: Option<Zeroizing<String>>,
}

impl SecretUri {
    /// The grammar of `sp_core::crypto::SecretUri`:
    /// `^(?P<phrase>[\w ]+)?(?P<path>(//?[^/]+)*)(///(?P<password>.*))?$`.
    fn parse(uri: &str) -> CoreResult<SecretUri> {
        let (body, password) = match uri.find("///") {
            Some(at) => (&uri[..at], Some(Zeroizing::new(uri[at + 3..].to_string()))),
            None => (uri, None),
        };
        let path_start = body.find('/').unwrap_or(body.len());
        let phrase = &body[..path_start];
        if !phrase.chars().all(|c| c.is_alphanumeric() || c == '_' || c == ' ') {
            return Err(CoreError::InvalidUri(
                "the part before the first '/' must be a mnemonic or a 0x seed".into(),
            ));
        }
        let mut junctions = Vec::new();
        let mut rest = &body[path_start..];
        while !rest.is_empty() {
            let after_slash = &rest[1..];
            let (hard, text) = match after_slash.strip_prefix('/') {
                Some(text) => (true, text),
                None => (false, after_slash),
            };
            let end = text.find('/').unwrap_or(text.len());
            if end == 0 {
                return Err(CoreError::InvalidUri("empty derivation junction (use //name or /name)".into()));
            }
            junctions.push(Junction::parse(&text[..end], hard));
            rest = &text[end..];
        }
        let phrase = if phrase.is_empty() { DEV_PHRASE.to_string() } else { phrase.to_string() };
        Ok(SecretUri { phrase: Zeroizing::new(phrase), junctions, password })
    }
}

fn parse_hex_array<const N: usize>(what: &'static str, text: &str) -> CoreResult<[u8; N]> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    let invalid = |reason: String| CoreError::InvalidHex { what, reason, expected_len: N * 2 };
    if digits.len() != N * 2 {
        return Err(invalid(format!("got {} hex digits", digits.len())));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).map_err(|err| invalid(err.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests;
