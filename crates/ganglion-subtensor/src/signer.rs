//! Signing transactions with our own keys: [`KeypairSigner`] implements subxt's
//! [`Signer`](subxt::tx::Signer) for [`ganglion_core::keys::Keypair`] (sr25519 through
//! schnorrkel with the `substrate` signing context, `MultiSignature::Sr25519`).
//!
//! subxt hands the signer the final bytes to sign: for a v4 transaction it already replaced
//! a signer payload longer than 256 bytes by its BLAKE2b-256 hash (frame-decode's
//! `encode_v4_signer_payload`), so the signer signs what it is given and hashes nothing
//! itself (`tests/it/signing.rs` checks both lengths).

use ganglion_core::keys::{Keypair, PublicKey};
use subxt::PolkadotConfig;
use subxt::utils::{AccountId32, MultiSignature};

/// One of our keypairs as a subxt signer.
#[derive(Clone)]
pub struct KeypairSigner {
    keypair: Keypair,
}

impl std::fmt::Debug for KeypairSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeypairSigner({})", self.keypair.public().to_ss58())
    }
}

impl KeypairSigner {
    /// Wraps a keypair.
    pub fn new(keypair: Keypair) -> Self {
        KeypairSigner { keypair }
    }

    /// The public key (the transaction's sender).
    pub fn public(&self) -> PublicKey {
        self.keypair.public()
    }
}

/// The subxt account id of one of our public keys.
pub fn account_id(key: &PublicKey) -> AccountId32 {
    AccountId32(*key.as_bytes())
}

impl subxt::tx::Signer<PolkadotConfig> for KeypairSigner {
    fn account_id(&self) -> AccountId32 {
        account_id(&self.keypair.public())
    }

    fn sign(&self, signer_payload: &[u8]) -> MultiSignature {
        MultiSignature::Sr25519(*self.keypair.sign(signer_payload).as_bytes())
    }
}

/// The same signer for subxt's `SubstrateConfig` (what an offline client with a given genesis
/// hash uses): subtensor's account, address and signature types are the same.
impl subxt::tx::Signer<subxt::SubstrateConfig> for KeypairSigner {
    fn account_id(&self) -> AccountId32 {
        account_id(&self.keypair.public())
    }

    fn sign(&self, signer_payload: &[u8]) -> MultiSignature {
        MultiSignature::Sr25519(*self.keypair.sign(signer_payload).as_bytes())
    }
}
