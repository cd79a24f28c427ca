//! SSH access information sealed to the renter.
//!
//! The renter generates an ephemeral X25519 keypair per request and sends the public half
//! in `Allocate.public_key`; the miner answers with a libsodium-compatible *sealed box*
//! (`crypto_box_seal`: an ephemeral sender key, X25519, XSalsa20-Poly1305) of the JSON
//! [`AccessInfo`], base64-encoded in `output.info`. Only the holder of the secret half can
//! open it, and a tampered box fails to open. The original used RSA-2048 OAEP-SHA256 over a
//! PEM key; X25519 keys are 32 bytes, cannot be generated weak, and need no padding choices.
//!
//! The box carries the SSH host key, so the renter can pin it (`ganglion compute allocate`
//! writes a `known_hosts` file) instead of trusting the first connection. Confidentiality
//! matters less here than with the original (there is no password; only the renter's own
//! key can log in), but the port and host key stay between miner and renter.

use base64::Engine;
use crypto_box::aead::OsRng;
use serde::{Deserialize, Serialize};

use crate::error::{ComputeError, Result};

/// What the renter needs to log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessInfo {
    /// The allocation's id (for status and release).
    pub allocation_id: String,
    /// SSH user (`root`: root inside the sandbox, an unprivileged uid outside).
    pub username: String,
    /// Host the miner advertises for SSH (None: use the miner's axon IP).
    pub host: Option<String>,
    /// SSH port.
    pub port: u16,
    /// The server's host key, an OpenSSH public key line.
    pub host_key: String,
    /// `SHA256:…` fingerprint of the host key.
    pub host_key_fingerprint: String,
    /// When the allocation ends (Unix ms).
    pub expires_at_ms: u64,
    /// Miner software version.
    pub version: String,
}

/// Seals `info` to the X25519 public key `to`; returns base64.
pub fn seal(info: &AccessInfo, to: &[u8; 32]) -> Result<String> {
    let plaintext = serde_json::to_vec(info)?;
    let public = crypto_box::PublicKey::from(*to);
    let sealed = public.seal(&mut OsRng, &plaintext).map_err(|_| ComputeError::Seal("sealing failed".into()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
}

/// The renter's ephemeral X25519 key.
pub struct RenterKey {
    secret: crypto_box::SecretKey,
}

impl std::fmt::Debug for RenterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenterKey").field("public", &self.public_hex()).finish_non_exhaustive()
    }
}

impl RenterKey {
    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> RenterKey {
        RenterKey { secret: crypto_box::SecretKey::generate(&mut OsRng) }
    }

    /// The public half as 64 hex digits (for `Allocate.public_key`).
    pub fn public_hex(&self) -> String {
        hex::encode(self.secret.public_key().as_bytes())
    }

    /// Opens the base64 sealed box of a reply.
    pub fn open(&self, info_b64: &str) -> Result<AccessInfo> {
        if info_b64.len() > 16 * 1024 {
            return Err(ComputeError::Seal("the sealed access information is implausibly large".into()));
        }
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(info_b64.trim())
            .map_err(|_| ComputeError::Seal("output.info is not base64".into()))?;
        let plaintext = self
            .secret
            .unseal(&sealed)
            .map_err(|_| ComputeError::Seal("cannot open output.info: not sealed to this request's key, or tampered".into()))?;
        Ok(serde_json::from_slice(&plaintext)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> AccessInfo {
        AccessInfo {
            allocation_id: "a1".into(),
            username: "root".into(),
            host: None,
            port: 4444,
            host_key: "ssh-ed25519 AAAA".into(),
            host_key_fingerprint: "SHA256:x".into(),
            expires_at_ms: 1,
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn only_the_renter_opens_the_box_and_tampering_is_detected() {
        let renter = RenterKey::generate();
        let mut public = [0u8; 32];
        hex::decode_to_slice(renter.public_hex(), &mut public).unwrap_or_else(|e| panic!("{e}"));
        let sealed = seal(&info(), &public).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(renter.open(&sealed).ok(), Some(info()));
        assert!(!sealed.contains("4444") && !sealed.contains("root"));
        assert!(RenterKey::generate().open(&sealed).is_err(), "another key cannot open it");
        let mut bytes = base64::engine::general_purpose::STANDARD.decode(&sealed).unwrap_or_default();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert!(renter.open(&tampered).is_err());
        assert!(renter.open("%%%").is_err());
    }
}
