//! The Bittensor keyfile: JSON key material, optionally sealed with `$NACL`.
//!
//! `$NACL` files are `b"$NACL" ‖ nonce(24) ‖ XSalsa20-Poly1305(secretbox)`, keyed with
//! Argon2i v1.3 at libsodium's *sensitive* limits (8 passes, 512 MiB) over a fixed salt,
//! as btwallet does. Legacy Ansible-Vault and Fernet files are recognised and named.

use std::path::Path;

use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{CoreError, CoreResult};
use crate::keys::{Keypair, PublicKey};

/// btwallet's fixed Argon2 salt.
pub const NACL_SALT: [u8; 16] = *b"\x13q\x83\xdf\xf1Z\t\xbc\x9c\x90\xb5Q\x879\xe9\xb1";
const NACL_MAGIC: &[u8] = b"$NACL";
const NONCE_LEN: usize = 24;
/// Keyfiles are a few hundred bytes; anything larger is refused unread.
pub const MAX_KEYFILE_BYTES: u64 = 64 * 1024;

/// Argon2i cost parameters. Production always uses [`KdfParams::SENSITIVE`]; tests of
/// code around the keyfile may pass cheaper ones to stay fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
}

impl KdfParams {
    /// libsodium's `crypto_pwhash_argon2i_{OPS,MEM}LIMIT_SENSITIVE`: 8 passes, 512 MiB.
    pub const SENSITIVE: KdfParams = KdfParams { memory_kib: 512 * 1024, iterations: 8 };

    fn derive(&self, password: &[u8]) -> CoreResult<Zeroizing<[u8; 32]>> {
        let params = argon2::Params::new(self.memory_kib, self.iterations, 1, Some(32))
            .map_err(|err| CoreError::InvalidKey(format!("argon2 parameters: {err}")))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(password, &NACL_SALT, key.as_mut_slice())
            .map_err(|err| CoreError::InvalidKey(format!("argon2: {err}")))?;
        Ok(key)
    }
}

/// How a keyfile's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// Plain JSON.
    Plain,
    /// `$NACL` (current btwallet).
    Nacl,
    /// `$ANSIBLE_VAULT` (legacy, not decrypted).
    AnsibleVault,
    /// Fernet, `gAAAAA…` (legacy, not decrypted).
    LegacyFernet,
}

impl Encryption {
    /// Recognises the format from the file's first bytes.
    pub fn detect(data: &[u8]) -> Encryption {
        if data.starts_with(NACL_MAGIC) {
            Encryption::Nacl
        } else if data.starts_with(b"$ANSIBLE_VAULT") {
            Encryption::AnsibleVault
        } else if data.starts_with(b"gAAAAA") {
            Encryption::LegacyFernet
        } else {
            Encryption::Plain
        }
    }
}

/// Seals `plain` as a `$NACL` keyfile.
pub fn encrypt(plain: &[u8], password: &str, kdf: KdfParams) -> CoreResult<Vec<u8>> {
    let key = kdf.derive(password.as_bytes())?;
    let cipher = XSalsa20Poly1305::new(key.as_slice().into());
    let nonce_bytes: [u8; NONCE_LEN] = rand::random();
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce_bytes), plain)
        .map_err(|_| CoreError::InvalidKey("secretbox encryption failed".into()))?;
    let mut out = Vec::with_capacity(NACL_MAGIC.len() + NONCE_LEN + sealed.len());
    out.extend_from_slice(NACL_MAGIC);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a `$NACL` keyfile. `path` is only used in error messages.
pub fn decrypt(data: &[u8], password: &str, kdf: KdfParams, path: &Path) -> CoreResult<Zeroizing<Vec<u8>>> {
    let corrupt = |reason: &str| CoreError::CorruptKeyfile { path: path.to_path_buf(), reason: reason.to_string() };
    let body = data.strip_prefix(NACL_MAGIC).ok_or_else(|| corrupt("it does not start with $NACL"))?;
    if body.len() < NONCE_LEN + 16 {
        return Err(corrupt("it is truncated (shorter than a nonce and an authentication tag)"));
    }
    let (nonce, sealed) = body.split_at(NONCE_LEN);
    let key = kdf.derive(password.as_bytes())?;
    let cipher = XSalsa20Poly1305::new(key.as_slice().into());
    cipher
        .decrypt(Nonce::from_slice(nonce), sealed)
        .map(Zeroizing::new)
        .map_err(|_| CoreError::WrongPassword { path: path.to_path_buf() })
}

/// The JSON inside a keyfile, field names as btwallet writes them.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyfileJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_seed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    private_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_phrase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ss58_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crypto_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
}

/// What a keyfile holds: a full keypair, or only a public key (`*pub.txt`, a watch-only coldkey).
// Few of these live at once and only briefly; boxing the keypair would put secret key
// bytes behind another allocation for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum KeyMaterial {
    /// A keypair that can sign.
    Secret(Keypair),
    /// A public key only.
    Public(PublicKey),
}

impl KeyMaterial {
    /// The public key in either case.
    pub fn public(&self) -> PublicKey {
        match self {
            KeyMaterial::Secret(keypair) => keypair.public(),
            KeyMaterial::Public(public) => *public,
        }
    }
}

/// Serialises a keypair as btwallet does (phrase and seed when known, 64-byte private key always).
pub fn serialize_keypair(keypair: &Keypair) -> Zeroizing<Vec<u8>> {
    let public = keypair.public();
    let json = KeyfileJson {
        secret_seed: keypair.seed().map(|seed| format!("0x{}", hex::encode(seed))),
        private_key: Some(format!("0x{}", hex::encode(keypair.secret_bytes().as_slice()))),
        secret_phrase: keypair.phrase().map(str::to_string),
        account_id: Some(public.to_hex()),
        ss58_address: Some(public.to_ss58()),
        crypto_type: Some(1),
        public_key: Some(public.to_hex()),
    };
    Zeroizing::new(serde_json::to_vec(&json).unwrap_or_default())
}

/// Serialises a public key as the `*pub.txt` files hold it.
pub fn serialize_public(public: &PublicKey) -> Vec<u8> {
    let json = KeyfileJson {
        account_id: Some(public.to_hex()),
        ss58_address: Some(public.to_ss58()),
        crypto_type: Some(1),
        public_key: Some(public.to_hex()),
        ..KeyfileJson::default()
    };
    serde_json::to_vec(&json).unwrap_or_default()
}

/// Parses decrypted keyfile JSON. Priority as btwallet: phrase → seed → private key → address.
pub fn deserialize(data: &[u8], path: &Path) -> CoreResult<KeyMaterial> {
    let corrupt = |reason: String| CoreError::CorruptKeyfile { path: path.to_path_buf(), reason };
    match Encryption::detect(data) {
        Encryption::Plain => {}
        Encryption::Nacl => return Err(corrupt("it is still encrypted".into())),
        Encryption::AnsibleVault => {
            return Err(CoreError::LegacyKeyfile { path: path.to_path_buf(), format: "ansible-vault" });
        }
        Encryption::LegacyFernet => {
            return Err(CoreError::LegacyKeyfile { path: path.to_path_buf(), format: "legacy fernet (PBKDF2)" });
        }
    }
    let json: KeyfileJson = serde_json::from_slice(data)
        .map_err(|err| corrupt(format!("it is not keyfile JSON ({err})")))?;
    let keypair = if let Some(phrase) = &json.secret_phrase {
        Some(Keypair::from_phrase(phrase, None)?)
    } else if let Some(seed) = &json.secret_seed {
        let seed = hex_field::<32>(seed).map_err(|reason| corrupt(format!("secretSeed {reason}")))?;
        Some(Keypair::from_seed(&seed)?)
    } else if let Some(private) = &json.private_key {
        let bytes = hex::decode(private.trim_start_matches("0x"))
            .map_err(|_| corrupt("privateKey is not hex".into()))?;
        match bytes.len() {
            32 => {
                let mut seed = [0u8; 32];
                seed.copy_from_slice(&bytes);
                Some(Keypair::from_seed(&seed)?)
            }
            64 => {
                let mut secret = Zeroizing::new([0u8; 64]);
                secret.copy_from_slice(&bytes);
                Some(Keypair::from_secret_bytes(&secret)?)
            }
            n => return Err(corrupt(format!("privateKey has {n} bytes, expected 32 or 64"))),
        }
    } else {
        None
    };
    let declared = match (&json.public_key, &json.ss58_address) {
        (Some(hex), _) => Some(PublicKey::from_hex(hex).map_err(|err| corrupt(format!("publicKey: {err}")))?),
        (None, Some(address)) => {
            Some(PublicKey::from_ss58(address).map_err(|err| corrupt(format!("ss58Address: {err}")))?)
        }
        (None, None) => None,
    };
    match (keypair, declared) {
        (Some(keypair), Some(declared)) if keypair.public() != declared => Err(corrupt(format!(
            "its secret belongs to {} but it claims to be {}",
            keypair.public(),
            declared
        ))),
        (Some(keypair), _) => Ok(KeyMaterial::Secret(keypair)),
        (None, Some(public)) => Ok(KeyMaterial::Public(public)),
        (None, None) => Err(corrupt("it holds neither a secret nor a public key".into())),
    }
}

fn hex_field<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let bytes = hex::decode(text.trim_start_matches("0x")).map_err(|_| "is not hex".to_string())?;
    bytes.try_into().map_err(|b: Vec<u8>| format!("has {} bytes, expected {N}", b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfParams = KdfParams { memory_kib: 64, iterations: 1 };

    #[test]
    fn reads_a_btwallet_hotkey_file() {
        // Written by bittensor_wallet 4.1.1 `Wallet.create_new_hotkey(use_password=False)`.
        let data = br#"{"secretSeed":"0x535c738da8e4659cedb548f5497d2d895fdd80e8c8482eaf4e78eac8e87112fc","privateKey":"0x41811a32b2c95dffde77609cfb1a826ad1a2b731ec85b449a3e715d3e826c00822602c77a2052bc5e2f245d8772c9c65a7485dc4322ebdd0681c2e3ffe76c212","secretPhrase":"program other hungry lunch butter either chair plate multiply kind chimney project","accountId":"0xea726b7c2cea5ac083ea1c6885ffd2f49ec48a51e98ba0d50f52557c83eff774","ss58Address":"5HN73y7fRxuwW5cEPcywrjsBs6b87SzHnguWGLaLDJKocN6F","cryptoType":1,"publicKey":"0xea726b7c2cea5ac083ea1c6885ffd2f49ec48a51e98ba0d50f52557c83eff774"}"#;
        let KeyMaterial::Secret(keypair) = deserialize(data, Path::new("h1")).expect("parse") else {
            panic!("expected a secret key");
        };
        assert_eq!(keypair.public().to_ss58(), "5HN73y7fRxuwW5cEPcywrjsBs6b87SzHnguWGLaLDJKocN6F");
        // The 64-byte private key alone gives the same key (btwallet's to_raw_vec format).
        let private_only = br#"{"privateKey":"0x41811a32b2c95dffde77609cfb1a826ad1a2b731ec85b449a3e715d3e826c00822602c77a2052bc5e2f245d8772c9c65a7485dc4322ebdd0681c2e3ffe76c212"}"#;
        assert_eq!(deserialize(private_only, Path::new("p")).expect("parse").public(), keypair.public());
        assert_eq!(
            hex::encode(keypair.secret_bytes().as_slice()),
            "41811a32b2c95dffde77609cfb1a826ad1a2b731ec85b449a3e715d3e826c00822602c77a2052bc5e2f245d8772c9c65a7485dc4322ebdd0681c2e3ffe76c212"
        );
    }

    #[test]
    fn round_trips_secret_and_public_files() {
        let keypair = Keypair::from_uri("//Alice").expect("uri");
        let back = deserialize(&serialize_keypair(&keypair), Path::new("k")).expect("parse");
        assert!(matches!(&back, KeyMaterial::Secret(k) if k.public() == keypair.public()));
        let public = deserialize(&serialize_public(&keypair.public()), Path::new("p")).expect("parse");
        assert!(matches!(public, KeyMaterial::Public(p) if p == keypair.public()));
    }

    #[test]
    fn encrypt_then_decrypt_and_wrong_password() {
        let plain = b"{\"secretPhrase\":\"x\"}";
        let sealed = encrypt(plain, "pw", CHEAP).expect("encrypt");
        assert_eq!(Encryption::detect(&sealed), Encryption::Nacl);
        assert_eq!(&**decrypt(&sealed, "pw", CHEAP, Path::new("k")).expect("decrypt"), plain);
        assert!(matches!(decrypt(&sealed, "nope", CHEAP, Path::new("k")), Err(CoreError::WrongPassword { .. })));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(decrypt(&tampered, "pw", CHEAP, Path::new("k")).is_err());
        assert!(decrypt(b"$NACL123", "pw", CHEAP, Path::new("k")).is_err(), "truncated");
    }

    #[test]
    fn legacy_and_corrupt_files_are_named() {
        let err = deserialize(b"$ANSIBLE_VAULT;1.1;AES256\n3033", Path::new("k")).expect_err("legacy");
        assert!(err.to_string().contains("ansible-vault"), "{err}");
        let err = deserialize(b"gAAAAABh...", Path::new("k")).expect_err("fernet");
        assert!(err.to_string().contains("fernet"), "{err}");
        for junk in [&b""[..], b"{", b"{}", b"null", b"[1,2]", b"{\"secretSeed\":\"0x12\"}", b"{\"privateKey\":\"0xzz\"}"] {
            let err = deserialize(junk, Path::new("k")).expect_err("junk");
            assert!(matches!(err, CoreError::CorruptKeyfile { .. }), "{junk:?}: {err}");
        }
        // A secret that does not match the public key it claims is refused.
        let mismatched = format!(
            "{{\"secretSeed\":\"0x{}\",\"publicKey\":\"{}\"}}",
            "11".repeat(32),
            Keypair::from_uri("//Bob").expect("uri").public().to_hex()
        );
        assert!(deserialize(mismatched.as_bytes(), Path::new("k")).is_err());
    }
}
