//! Transactions: the [`Call`]s the chain accepts and their sr25519-signed envelope.
//!
//! # Canonical encoding
//! The signer signs (schnorrkel context `substrate`, via `ganglion_core`)
//! `b"ganglion/tx/v1" ‖ genesis_hash[32] ‖ signer[32] ‖ nonce (u64 LE) ‖ call_json`,
//! where `call_json` is `serde_json::to_vec(&call)`. Calls contain no maps and no floats, so
//! serialising a decoded call gives back the same bytes: the node re-encodes what it decoded
//! and verifies against that. The genesis hash binds a transaction to one chain, the nonce to
//! one position in the account's history, so a replay (same chain or another) is refused.
//!
//! Which key signs: the coldkey for `RegisterNetwork`, `BurnedRegister`, `AddStake`,
//! `RemoveStake`, `Transfer`, `SetHyperparams` and `Faucet`; the hotkey for `ServeAxon`,
//! `SetWeights`, `CommitWeights`, `RevealWeights` and `SetCommitment`.

use std::net::IpAddr;

use ganglion_core::keys::{Keypair, PublicKey, Signature};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::AccountId;
use crate::error::{ChainError, TxError};
use crate::hyperparams::HyperparamUpdate;

/// Domain separator of the signing payload.
pub const SIGNING_DOMAIN: &[u8] = b"ganglion/tx/v1";

/// Largest accepted transaction body in bytes (a 4096-uid weight vector fits).
pub const MAX_TX_BYTES: usize = 256 * 1024;

/// A chain call. See the module doc for which key signs each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case", deny_unknown_fields)]
pub enum Call {
    /// Create a subnet (coldkey pays the lock cost); `hotkey` becomes uid 0 and owner hotkey.
    RegisterNetwork {
        /// Owner hotkey.
        hotkey: AccountId,
        /// A specific free netuid, or the next free one.
        netuid: Option<u16>,
    },
    /// Burned registration of `hotkey` in `netuid` (coldkey pays the burn).
    BurnedRegister {
        /// Subnet.
        netuid: u16,
        /// Hotkey to register (its owner becomes the signing coldkey).
        hotkey: AccountId,
    },
    /// Stake `amount` rao from the coldkey's balance on `hotkey` in `netuid`.
    AddStake {
        /// Subnet.
        netuid: u16,
        /// Hotkey.
        hotkey: AccountId,
        /// Rao.
        amount: u64,
    },
    /// Unstake `amount` rao back to the coldkey's balance.
    RemoveStake {
        /// Subnet.
        netuid: u16,
        /// Hotkey.
        hotkey: AccountId,
        /// Rao.
        amount: u64,
    },
    /// Transfer `amount` rao to `dest`.
    Transfer {
        /// Recipient.
        dest: AccountId,
        /// Rao.
        amount: u64,
    },
    /// Publish the signing hotkey's axon.
    ServeAxon {
        /// Subnet.
        netuid: u16,
        /// `major·10⁶ + minor·10³ + patch`.
        version: u32,
        /// Address.
        ip: IpAddr,
        /// Port (not 0).
        port: u16,
        /// Protocol number.
        protocol: u8,
    },
    /// Set the signing hotkey's weights (u16 values as the SDK emits them).
    SetWeights {
        /// Subnet.
        netuid: u16,
        /// Target uids.
        uids: Vec<u16>,
        /// Values, one per uid.
        values: Vec<u16>,
        /// Validator version key.
        version_key: u64,
    },
    /// Commit to weights without showing them (commit-reveal on): the hash of
    /// [`crate::commit_reveal::weight_hash`] over what `RevealWeights` will show.
    CommitWeights {
        /// Subnet.
        netuid: u16,
        /// BLAKE2b-256 of the SCALE-encoded (hotkey, netuid, uids, values, salt, version_key).
        #[serde(with = "crate::commit_reveal::hex32")]
        commit_hash: [u8; 32],
    },
    /// Reveal committed weights; applied as `SetWeights` once the hash matches a commit in
    /// its reveal window.
    RevealWeights {
        /// Subnet.
        netuid: u16,
        /// Target uids.
        uids: Vec<u16>,
        /// Values, one per uid.
        values: Vec<u16>,
        /// The salt the commit was hashed with.
        salt: Vec<u16>,
        /// Validator version key.
        version_key: u64,
    },
    /// Set the signing hotkey's commitment (≤ 128 bytes).
    SetCommitment {
        /// Subnet.
        netuid: u16,
        /// Data.
        data: String,
    },
    /// Owner changes hyperparameters.
    SetHyperparams {
        /// Subnet.
        netuid: u16,
        /// Fields to change.
        update: HyperparamUpdate,
    },
    /// Dev faucet: credit the signer (local chains only, capped per call).
    Faucet {
        /// Rao.
        amount: u64,
    },
}

impl Call {
    /// Short name for logs and block listings.
    pub fn name(&self) -> &'static str {
        match self {
            Call::RegisterNetwork { .. } => "register_network",
            Call::BurnedRegister { .. } => "burned_register",
            Call::AddStake { .. } => "add_stake",
            Call::RemoveStake { .. } => "remove_stake",
            Call::Transfer { .. } => "transfer",
            Call::ServeAxon { .. } => "serve_axon",
            Call::SetWeights { .. } => "set_weights",
            Call::CommitWeights { .. } => "commit_weights",
            Call::RevealWeights { .. } => "reveal_weights",
            Call::SetCommitment { .. } => "set_commitment",
            Call::SetHyperparams { .. } => "set_hyperparams",
            Call::Faucet { .. } => "faucet",
        }
    }
}

/// A signed transaction as sent over the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTransaction {
    /// The signing account (SS58).
    pub signer: AccountId,
    /// The signer's nonce this transaction consumes.
    pub nonce: u64,
    /// The call.
    pub call: Call,
    /// Hex sr25519 signature over the canonical payload.
    pub signature: String,
}

/// Parse a 32-byte hex genesis hash.
pub fn parse_genesis(text: &str) -> Result<[u8; 32], ChainError> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    let bytes = hex::decode(digits).map_err(|e| ChainError::Protocol(format!("genesis hash `{text}` is not hex: {e}")))?;
    bytes
        .try_into()
        .map_err(|_| ChainError::Protocol(format!("genesis hash `{text}` is not 32 bytes")))
}

/// The bytes a transaction's signature covers.
pub fn signing_payload(genesis: &[u8; 32], signer: &PublicKey, nonce: u64, call: &Call) -> Vec<u8> {
    // A `Call` holds only strings, integers, IP addresses and vectors; serialising it cannot fail.
    let call_json = serde_json::to_vec(call).unwrap_or_default();
    let mut out = Vec::with_capacity(SIGNING_DOMAIN.len() + 72 + call_json.len());
    out.extend_from_slice(SIGNING_DOMAIN);
    out.extend_from_slice(genesis);
    out.extend_from_slice(signer.as_bytes());
    out.extend_from_slice(&nonce.to_le_bytes());
    out.extend_from_slice(&call_json);
    out
}

impl SignedTransaction {
    /// Sign `call` with `signer` for the chain with `genesis`.
    pub fn sign(signer: &Keypair, nonce: u64, genesis: &[u8; 32], call: Call) -> SignedTransaction {
        let public = signer.public();
        let signature = signer.sign(&signing_payload(genesis, &public, nonce, &call));
        SignedTransaction { signer: AccountId(public), nonce, call, signature: signature.to_hex() }
    }

    /// Check the signature for the chain with `genesis`.
    pub fn verify(&self, genesis: &[u8; 32]) -> Result<(), TxError> {
        let signature = Signature::from_hex(&self.signature).map_err(|_| TxError::BadProof)?;
        let payload = signing_payload(genesis, &self.signer.0, self.nonce, &self.call);
        if self.signer.0.verify(&payload, &signature) {
            Ok(())
        } else {
            Err(TxError::BadProof)
        }
    }

    /// Hex SHA-256 of the canonical JSON of the whole signed transaction.
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    }

    /// Decode and bound a transaction body.
    pub fn decode(body: &[u8]) -> Result<SignedTransaction, TxError> {
        if body.len() > MAX_TX_BYTES {
            return Err(TxError::Malformed(format!("transaction is {} bytes, the limit is {MAX_TX_BYTES}", body.len())));
        }
        serde_json::from_slice(body).map_err(|e| TxError::Malformed(format!("cannot decode transaction JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Keypair {
        match Keypair::from_uri("//Alice") {
            Ok(k) => k,
            Err(e) => panic!("//Alice: {e}"),
        }
    }

    #[test]
    fn sign_verify_roundtrip_through_json() {
        let kp = alice();
        let genesis = [7u8; 32];
        let call = Call::SetWeights { netuid: 1, uids: vec![0, 2], values: vec![65535, 3], version_key: 9 };
        let tx = SignedTransaction::sign(&kp, 5, &genesis, call);
        let bytes = serde_json::to_vec(&tx).unwrap_or_default();
        let back = SignedTransaction::decode(&bytes).map_err(|e| e.to_string());
        assert_eq!(back.as_ref().map(|t| t.verify(&genesis)), Ok(Ok(())));
        assert_eq!(back.map(|t| t.hash()), Ok(tx.hash()));
    }

    #[test]
    fn tampering_or_other_chain_fails() {
        let kp = alice();
        let genesis = [7u8; 32];
        let tx = SignedTransaction::sign(&kp, 5, &genesis, Call::Faucet { amount: 10 });
        assert_eq!(tx.verify(&[8u8; 32]), Err(TxError::BadProof));
        let mut t2 = tx.clone();
        t2.nonce = 6;
        assert_eq!(t2.verify(&genesis), Err(TxError::BadProof));
        let mut t3 = tx.clone();
        t3.call = Call::Faucet { amount: 11 };
        assert_eq!(t3.verify(&genesis), Err(TxError::BadProof));
        let mut t4 = tx;
        t4.signature = "zz".into();
        assert_eq!(t4.verify(&genesis), Err(TxError::BadProof));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for body in [&b"{"[..], b"{}", br#"{"signer":"x","nonce":0,"call":{"call":"faucet","amount":1},"signature":""}"#,
            br#"{"signer":"5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY","nonce":0,"call":{"call":"rob_bank"},"signature":""}"#] {
            assert_eq!(SignedTransaction::decode(body).map_err(|e| e.name()), Err("Malformed"));
        }
        let big = vec![b' '; MAX_TX_BYTES + 1];
        assert!(matches!(SignedTransaction::decode(&big), Err(TxError::Malformed(_))));
    }
}
