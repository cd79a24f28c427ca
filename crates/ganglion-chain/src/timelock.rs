//! Drand-timelocked weight commits: subtensor's commit-reveal v3
//! (`SubtensorModule.commit_timelocked_weights(netuid, commit, reveal_round,
//! commit_reveal_version)`), byte-compatible with the PyPI package `bittensor-drand` 2.0.0
//! (the SDK's implementation) and with what the chain decrypts.
//!
//! # What a commit is
//! 1. The payload is subtensor's `WeightsTlockPayload`, SCALE-encoded, fields in this order
//!    (see [`WeightsTlockPayload`]): `hotkey: Vec<u8>` (the committer's 32-byte public key,
//!    after its compact length prefix; the chain decodes it as an `AccountId32` and requires
//!    it to be the committer), `uids: Vec<u16>`, `values: Vec<u16>`,
//!    `version_key: u64`. Older payloads had no hotkey; current subtensor and
//!    `bittensor-drand` (its `drand.rs`, `WeightsTlockPayload`) put it first.
//! 2. It is encrypted with drand timelock encryption (Boneh–Franklin IBE, `FullIdent`, over
//!    BLS12-381 with drand **quicknet**'s scheme "bls-unchained-g1-rfc9380": signatures in
//!    G1, the public key in G2) to the identity `SHA-256(reveal_round as u64 big-endian)`,
//!    with the `timelock` crate's `TinyBLS381` engine; the IBE part protects a random 32-byte
//!    key, the payload itself is sealed with AES-256-GCM under that key.
//! 3. The ciphertext's bytes are the arkworks *compressed* serialization of the old `tle`
//!    crate's `TLECiphertext` (the git crate subtensor's `pallets/subtensor` and
//!    `bittensor-drand` build on), see [`encrypt_at_round`] for the exact layout. Note: the
//!    crates.io `timelock` 0.3.0 declares the IBE header's `v` and `w` as `[u8; 32]`, which
//!    arkworks serializes *without* the length prefix the old `Vec<u8>` fields had, so its own
//!    `serialize_compressed` is 16 bytes short of, and misaligned with, what the chain's `tle`
//!    types read (unit test `timelock_crates_own_serialization_is_16_bytes_short`). This
//!    module therefore writes and reads the wire layout itself and uses `timelock` only for
//!    the cryptography (`tle`/`tld`).
//!
//! The calls, as read from the spec-346 and spec-381 metadata in `fixtures/subtensor/`
//! (identical in both): `SubtensorModule` call 113 `commit_timelocked_weights(netuid: NetUid,
//! commit: BoundedVec<u8, ConstU32<MAX_CRV3_COMMIT_SIZE_BYTES>>, reveal_round: u64,
//! commit_reveal_version: u16)` and call 118 `commit_timelocked_mechanism_weights(netuid,
//! mecid: MechId, commit, reveal_round, commit_reveal_version)` (the one bittensor 10.x sends).
//!
//! When quicknet publishes round `reveal_round`, its BLS signature is the IBE private key of
//! that identity; pallet `drand` stores the pulse, and in the commit's reveal epoch the chain
//! (`reveal_crv3_commits_for_subnet`) decrypts the commit with it
//! ([`decrypt_with_signature`] does the same here) and sets the weights.
//!
//! # The reveal round
//! `bittensor-drand` 2.0.0 no longer has the 0.x/1.x
//! `get_encrypted_commit(uids, weights, version_key, tempo, current_block, netuid,
//! reveal_period, block_time, hotkey)` whose round depended on `netuid` (that formula is not
//! implemented here: the installed reference has nothing to compare it with, and the SDK no
//! longer uses it); its only weights entry point is
//! `get_encrypted_commit_v2`, which simulates subtensor's per-block epoch scheduling from a
//! snapshot of the subnet's state ([`EpochSchedule`]): it predicts the first block whose
//! `reveal_crv3_commits` sees the epoch `commit epoch + reveal_period_epochs`
//! ([`predict_first_reveal_block`]), adds [`SECURITY_BLOCK_OFFSET`] blocks, converts the
//! remaining blocks to seconds with the given block time, adds that to *now* and takes the
//! quicknet round of that instant ([`reveal_round`]). `netuid` does not enter it any more.
//!
//! # Checked against `bittensor-drand` 2.0.0 (tests `tests/it/drand_timelock.rs`)
//! - The round-1000 signature (the one real pulse available offline) opens our commits to
//!   round 1000, i.e. our identity hashing and quicknet key are right.
//! - Ours → theirs: our ciphertext for quicknet round 1000 (in the SDK's `UserData`
//!   envelope, which its `decrypt_with_signature` takes, see [`wrap_user_data`]) opens with
//!   `bittensor_drand.decrypt_with_signature` and the real round-1000 signature; the
//!   plaintext is parsed in Python, independently of our decoder, into our hotkey, uids,
//!   values and version key.
//! - Theirs → ours: `bittensor_drand.get_encrypted_commit_v2` (the bytes the SDK submits to
//!   `commit_timelocked_weights`) made to target round 1000 opens with our
//!   [`decrypt_with_signature`] into the SDK's hotkey, uids, values and version key.
//! - A ciphertext for another round does not open with the round-1000 signature, on either
//!   side ([`TimelockError::WrongSignature`] here).
//! - [`reveal_round`] equals the round `get_encrypted_commit_v2` returns for a table of epoch
//!   schedules (plain, mid-epoch, pending owner-triggered epoch, overdue step counter,
//!   several reveal periods and tempos), with the wall-clock read by both bracketed (see the
//!   test); its error for tempo 0 matches theirs. The unit tests also pin
//!   [`predict_first_reveal_block`] to the vectors of `bittensor-drand`'s
//!   `src/epoch_schedule_vectors.rs`.
//!
//! # Not checked
//! - Against a running subtensor (no node here): that the chain accepts and decrypts these
//!   bytes rests on `bittensor-drand` doing so and on the layout above read from subtensor's
//!   `WeightsTlockPayload` and `tle` types.
//! - `MaxEpochsPerBlock` deferral is modelled by neither side.
//! - Fetching pulses from drand's HTTP API (`get_signature_for_round`, `get_latest_round`):
//!   no network here, and the chain is the one that decrypts.

use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use ganglion_core::keys::PublicKey;
use parity_scale_codec::{Decode, DecodeAll, Encode};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use timelock::block_ciphers::AESGCMBlockCipherProvider;
use timelock::engines::EngineBLS;
use timelock::engines::drand::TinyBLS381;
use timelock::ibe::fullident::{Ciphertext as IbeCiphertext, Identity};
use timelock::tlock::{TLECiphertext, tld, tle};

/// Drand quicknet's group public key (a compressed G2 point, hex). From drand's chain info
/// for quicknet (`https://api.drand.sh/52db9ba7…e971/info`), as pinned by `bittensor-drand`
/// (`src/constants.rs`, `DRAND_PUBLIC_KEY`) and by the `timelock` crate's quicknet test.
pub const QUICKNET_PUBLIC_KEY_HEX: &str = "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a";

/// Quicknet's chain hash (its identifier in drand's HTTP API). Same sources.
pub const QUICKNET_CHAIN_HASH: &str = "52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971";

/// Quicknet's genesis time, Unix seconds (round 1 is at genesis). Same sources
/// (`GENESIS_TIME` in `bittensor-drand`).
pub const QUICKNET_GENESIS_TIME: u64 = 1_692_803_367;

/// Quicknet's period: one round every 3 seconds (`DRAND_PERIOD` in `bittensor-drand`).
pub const QUICKNET_PERIOD: u64 = 3;

/// Blocks `bittensor-drand` adds to the predicted reveal block so that the target pulse has
/// already been ingested by the chain (`SECURITY_BLOCK_OFFSET`).
pub const SECURITY_BLOCK_OFFSET: u64 = 3;

/// The commit extrinsic lands in the block after the head the client read
/// (`COMMIT_INCLUSION_BLOCK_OFFSET` in `bittensor-drand`).
pub const COMMIT_INCLUSION_BLOCK_OFFSET: u64 = 1;

/// Subtensor's upper bound on an owner-set tempo (≈ 7 days of 12 s blocks); a step counter
/// beyond it forces an epoch (`MAX_TEMPO` in `bittensor-drand`).
pub const MAX_TEMPO: u64 = 50_400;

/// The symmetric cipher suite tag written in every ciphertext (the `tle`/`timelock` AES-GCM
/// provider's `CIPHER_SUITE`).
pub const CIPHER_SUITE: &[u8] = b"AES_GCM_";

/// The `commit_reveal_version` the SDK passes with these commits (the default of
/// `commit_timelocked_weights_extrinsic` in bittensor 10.x, `bittensor/core/extrinsics/weights.py`,
/// which sends the same commit bytes through `commit_timelocked_mechanism_weights(netuid,
/// mecid, commit, reveal_round, commit_reveal_version)`).
pub const COMMIT_REVEAL_VERSION: u16 = 4;

/// Subtensor's bound on a timelocked commit (`MAX_CRV3_COMMIT_SIZE_BYTES`, the
/// `BoundedVec` of the `commit` argument): 244 bytes of envelope plus a 45-byte payload frame leave
/// room for 1177 uid/value pairs.
pub const MAX_COMMIT_BYTES: usize = 5000;

/// Length of a compressed G2 point (the IBE header's `U`, and quicknet's public key).
const G2_COMPRESSED_LEN: usize = 96;
/// Length of a compressed G1 point (a quicknet round signature).
pub const SIGNATURE_LEN: usize = 48;

/// What can go wrong building or opening a timelocked commit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TimelockError {
    /// The subnet's tempo is 0: it runs no epochs, so nothing would ever be revealed
    /// (`bittensor-drand`: "tempo is zero; subnet does not run epochs").
    #[error("tempo is 0: the subnet runs no epochs, a commit would never be revealed")]
    TempoZero,
    /// No block within the simulation budget reaches the reveal epoch.
    #[error("no reveal block within {0} simulated blocks")]
    RevealBlockNotFound(u64),
    /// `uids` and `values` differ in length (the chain would reject the revealed weights).
    #[error("{uids} uids but {values} values")]
    LengthMismatch {
        /// Number of uids.
        uids: usize,
        /// Number of values.
        values: usize,
    },
    /// The commit would exceed [`MAX_COMMIT_BYTES`]; the chain refuses the extrinsic.
    #[error("commit of {0} bytes exceeds the chain's {MAX_COMMIT_BYTES}-byte bound")]
    CommitTooLarge(usize),
    /// The block time is not a finite number of seconds.
    #[error("block time {0} s is not finite")]
    BadBlockTime(f64),
    /// The ciphertext's bytes are not a serialized timelock ciphertext.
    #[error("malformed timelock ciphertext: {0}")]
    MalformedCiphertext(String),
    /// The ciphertext names a symmetric cipher other than AES-GCM.
    #[error("unsupported cipher suite {0:?}")]
    UnsupportedCipherSuite(Vec<u8>),
    /// The signature is not a compressed BLS12-381 G1 point.
    #[error("malformed round signature: {0}")]
    MalformedSignature(String),
    /// The signature does not open the ciphertext: it is another round's (or not quicknet's).
    #[error("the signature does not open this ciphertext (another round's signature?)")]
    WrongSignature,
    /// The IBE layer opened but the AES-GCM body did not authenticate (tampered body).
    #[error("the AES-GCM body did not authenticate")]
    BodyDecryption,
    /// The plaintext is not a SCALE-encoded [`WeightsTlockPayload`].
    #[error("the plaintext is not a WeightsTlockPayload: {0}")]
    PayloadDecode(String),
    /// The `UserData` envelope of `bittensor-drand`'s generic `encrypt` is malformed.
    #[error("malformed UserData envelope: {0}")]
    MalformedEnvelope(String),
    /// The `timelock` library refused to encrypt.
    #[error("timelock encryption failed: {0}")]
    Encryption(String),
}

/// The plaintext of a v3 commit: subtensor's `WeightsTlockPayload`
/// (`pallets/subtensor/src/coinbase/reveal_commits.rs`), SCALE-encoded in field order.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct WeightsTlockPayload {
    /// The committing hotkey's public key bytes (32 for sr25519). The chain compares it with
    /// the account that submitted the commit.
    pub hotkey: Vec<u8>,
    /// Neuron uids.
    pub uids: Vec<u16>,
    /// Weights, u16-normalised (the SDK's `convert_weights_and_uids_for_emit`).
    pub values: Vec<u16>,
    /// The subnet's weights version key.
    pub version_key: u64,
}

/// The envelope `bittensor-drand`'s generic `encrypt`/`encrypt_at_round` return and its
/// `decrypt`/`decrypt_with_signature` take: SCALE `UserData { encrypted_data: Vec<u8>,
/// reveal_round: u64 }`. Not what `commit_timelocked_weights` takes (that is the bare
/// ciphertext with the round as a separate argument).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct UserData {
    /// The bare timelock ciphertext.
    pub encrypted_data: Vec<u8>,
    /// The round it is locked to.
    pub reveal_round: u64,
}

/// Wraps a bare ciphertext in `bittensor-drand`'s [`UserData`] envelope.
pub fn wrap_user_data(ciphertext: &[u8], reveal_round: u64) -> Vec<u8> {
    UserData { encrypted_data: ciphertext.to_vec(), reveal_round }.encode()
}

/// Opens `bittensor-drand`'s [`UserData`] envelope (all bytes must be consumed).
pub fn unwrap_user_data(bytes: &[u8]) -> Result<UserData, TimelockError> {
    UserData::decode_all(&mut &bytes[..]).map_err(|e| TimelockError::MalformedEnvelope(e.to_string()))
}

type PublicKeyGroup = <TinyBLS381 as EngineBLS>::PublicKeyGroup;
type SignatureGroup = <TinyBLS381 as EngineBLS>::SignatureGroup;

fn quicknet_public_key() -> PublicKeyGroup {
    let bytes = hex::decode(QUICKNET_PUBLIC_KEY_HEX).unwrap_or_default();
    // A constant, checked by the unit test below: cannot fail at run time.
    PublicKeyGroup::deserialize_compressed(&bytes[..]).unwrap_or_default()
}

/// The IBE identity of a quicknet round: `SHA-256(round as u64 big-endian)`, the message
/// quicknet signs ("unchained": no previous signature in it).
fn round_identity(round: u64) -> Identity {
    Identity::new(b"", &Sha256::digest(round.to_be_bytes()))
}

/// Timelock-encrypts arbitrary bytes to quicknet round `reveal_round`; returns the bare
/// ciphertext in the wire layout subtensor and `bittensor-drand` decode (arkworks compressed
/// serialization of `tle`'s `TLECiphertext<TinyBLS381>`; lengths are u64 little-endian):
///
/// ```text
/// U            96 bytes   compressed G2 point (IBE header)
/// len(V)=32    8 bytes,  V  32 bytes
/// len(W)=32    8 bytes,  W  32 bytes
/// len(body)    8 bytes,  body = len(ct) 8 bytes | AES-GCM ct (plaintext + 16-byte tag)
///                               | len(nonce)=12 8 bytes | nonce 12 bytes
/// len(suite)=8 8 bytes,  "AES_GCM_"
/// ```
///
/// So a plaintext of `n` bytes gives `244 + n` bytes.
pub fn encrypt_at_round(plaintext: &[u8], reveal_round: u64) -> Result<Vec<u8>, TimelockError> {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    let ct = tle::<TinyBLS381, AESGCMBlockCipherProvider, OsRng>(
        quicknet_public_key(),
        key,
        plaintext,
        round_identity(reveal_round),
        OsRng,
    )
    .map_err(|e| TimelockError::Encryption(format!("{e:?}")))?;
    let mut out = Vec::with_capacity(244 + plaintext.len());
    ct.header
        .u
        .serialize_compressed(&mut out)
        .map_err(|e| TimelockError::Encryption(e.to_string()))?;
    for field in [&ct.header.v[..], &ct.header.w[..], &ct.body[..], &ct.cipher_suite[..]] {
        out.extend_from_slice(&(field.len() as u64).to_le_bytes());
        out.extend_from_slice(field);
    }
    Ok(out)
}

/// Builds the bytes for `commit_timelocked_weights(netuid, commit, reveal_round, version)`:
/// the SCALE-encoded [`WeightsTlockPayload`] timelock-encrypted to `reveal_round` (see
/// [`encrypt_at_round`] for the layout). `hotkey` is the committer's public key: the chain
/// decodes the payload's hotkey bytes as an `AccountId32` and drops the commit unless it is
/// the account that signed the commit. Refuses unequal `uids`/`values` lengths (the chain's
/// `do_set_weights` would) and commits over [`MAX_COMMIT_BYTES`] (the extrinsic's bound).
pub fn encrypt_weights(
    hotkey: &PublicKey,
    uids: &[u16],
    values: &[u16],
    version_key: u64,
    reveal_round: u64,
) -> Result<Vec<u8>, TimelockError> {
    if uids.len() != values.len() {
        return Err(TimelockError::LengthMismatch { uids: uids.len(), values: values.len() });
    }
    let payload = WeightsTlockPayload {
        hotkey: hotkey.as_bytes().to_vec(),
        uids: uids.to_vec(),
        values: values.to_vec(),
        version_key,
    };
    let commit = encrypt_at_round(&payload.encode(), reveal_round)?;
    if commit.len() > MAX_COMMIT_BYTES {
        return Err(TimelockError::CommitTooLarge(commit.len()));
    }
    Ok(commit)
}

/// A reader over the wire layout, with typed errors.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], TimelockError> {
        if self.0.len() < n {
            return Err(TimelockError::MalformedCiphertext(format!(
                "{what}: needs {n} bytes, {} left",
                self.0.len()
            )));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn vec(&mut self, what: &str) -> Result<&'a [u8], TimelockError> {
        let mut len = [0u8; 8];
        len.copy_from_slice(self.take(8, what)?);
        let len = usize::try_from(u64::from_le_bytes(len))
            .map_err(|_| TimelockError::MalformedCiphertext(format!("{what}: length overflows")))?;
        self.take(len, what)
    }

    fn hash(&mut self, what: &str) -> Result<[u8; 32], TimelockError> {
        let bytes = self.vec(what)?;
        <[u8; 32]>::try_from(bytes)
            .map_err(|_| TimelockError::MalformedCiphertext(format!("{what}: {} bytes, not 32", bytes.len())))
    }
}

/// Parses the wire layout of [`encrypt_at_round`] (all bytes must be consumed).
fn parse_ciphertext(bytes: &[u8]) -> Result<TLECiphertext<TinyBLS381>, TimelockError> {
    let mut r = Reader(bytes);
    let u = PublicKeyGroup::deserialize_compressed(r.take(G2_COMPRESSED_LEN, "U")?)
        .map_err(|e| TimelockError::MalformedCiphertext(format!("U is not a G2 point: {e}")))?;
    let v = r.hash("V")?;
    let w = r.hash("W")?;
    let body = r.vec("body")?.to_vec();
    let cipher_suite = r.vec("cipher suite")?.to_vec();
    if !r.0.is_empty() {
        return Err(TimelockError::MalformedCiphertext(format!("{} trailing bytes", r.0.len())));
    }
    if cipher_suite != CIPHER_SUITE {
        return Err(TimelockError::UnsupportedCipherSuite(cipher_suite));
    }
    Ok(TLECiphertext { header: IbeCiphertext { u, v, w }, body, cipher_suite })
}

/// Decrypts a bare ciphertext with a quicknet round signature (48-byte compressed G1 point,
/// as drand's API returns it hex-encoded): the plaintext bytes.
pub fn decrypt_bytes(ciphertext: &[u8], round_signature: &[u8]) -> Result<Vec<u8>, TimelockError> {
    let ct = parse_ciphertext(ciphertext)?;
    if round_signature.len() != SIGNATURE_LEN {
        return Err(TimelockError::MalformedSignature(format!(
            "{} bytes, not {SIGNATURE_LEN}",
            round_signature.len()
        )));
    }
    let signature = SignatureGroup::deserialize_compressed(round_signature)
        .map_err(|e| TimelockError::MalformedSignature(e.to_string()))?;
    tld::<TinyBLS381, AESGCMBlockCipherProvider>(ct, signature).map_err(|e| match e {
        timelock::tlock::Error::InvalidSignature => TimelockError::WrongSignature,
        timelock::tlock::Error::DecryptionError => TimelockError::BodyDecryption,
        other => TimelockError::MalformedCiphertext(format!("{other:?}")),
    })
}

/// What the chain does once round `reveal_round`'s pulse is in (subtensor's
/// `reveal_crv3_commits_for_subnet`): decrypts a `commit_timelocked_weights` commit with
/// that round's signature and decodes the [`WeightsTlockPayload`] (with SCALE's `decode`, as
/// the chain: trailing bytes are ignored). Not mirrored: the chain then checks that the
/// payload's hotkey is the committer, and falls back to the hotkey-less legacy payload
/// `{uids, values, version_key}` when the new one does not decode; here the first is the
/// caller's business and the second an error ([`TimelockError::PayloadDecode`]).
pub fn decrypt_with_signature(ciphertext: &[u8], round_signature: &[u8]) -> Result<WeightsTlockPayload, TimelockError> {
    let plaintext = decrypt_bytes(ciphertext, round_signature)?;
    WeightsTlockPayload::decode(&mut &plaintext[..]).map_err(|e| TimelockError::PayloadDecode(e.to_string()))
}

/// A snapshot of a subnet's epoch scheduling state at the chain head, the storage
/// `get_encrypted_commit_v2` reads (subtensor's `LastEpochBlock`, `PendingEpochAt`,
/// `SubnetEpochIndex`, `Tempo`, `BlocksSinceLastStep`, and the head block number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochSchedule {
    /// Block at which the subnet's last epoch ran.
    pub last_epoch_block: u64,
    /// Block of a pending owner-triggered epoch, 0 if none.
    pub pending_epoch_at: u64,
    /// The subnet's monotonic epoch counter.
    pub subnet_epoch_index: u64,
    /// Epoch length in blocks.
    pub tempo: u16,
    /// Blocks since the subnet's last step.
    pub blocks_since_last_step: u64,
    /// The chain head's block number.
    pub current_block: u64,
}

impl EpochSchedule {
    /// Whether the subnet's epoch runs in `block` (subtensor's `should_run_epoch`).
    fn epoch_runs(&self, block: u64) -> bool {
        if self.tempo == 0 {
            return false;
        }
        (self.pending_epoch_at > 0 && block >= self.pending_epoch_at)
            || self.blocks_since_last_step > MAX_TEMPO
            || block.saturating_sub(self.last_epoch_block) >= u64::from(self.tempo)
    }

    /// The epoch index `reveal_crv3_commits` sees in `block`: it runs before the coinbase,
    /// counting an epoch that will run in this block.
    fn reveal_epoch(&self, block: u64) -> u64 {
        self.subnet_epoch_index + u64::from(self.epoch_runs(block))
    }

    /// The state after the coinbase of `block`.
    fn after_block(mut self, block: u64) -> Self {
        self.blocks_since_last_step = self.blocks_since_last_step.saturating_add(1);
        self.current_block = block;
        if self.epoch_runs(block) {
            self.last_epoch_block = block;
            self.pending_epoch_at = 0;
            self.subnet_epoch_index = self.subnet_epoch_index.saturating_add(1);
            self.blocks_since_last_step = 0;
        }
        self
    }
}

/// The first block in which the chain reveals a commit submitted against `head` (included
/// in the next block) with `reveal_period_epochs` (the subnet's
/// `RevealPeriodEpochs`/`commit_reveal_period`): the first block whose reveal step sees
/// epoch `commit epoch + reveal_period_epochs`. Simulates at most
/// `(reveal_period_epochs + 1) × MAX_TEMPO` blocks.
pub fn predict_first_reveal_block(head: &EpochSchedule, reveal_period_epochs: u64) -> Result<u64, TimelockError> {
    if head.tempo == 0 {
        return Err(TimelockError::TempoZero);
    }
    let inclusion_block = head.current_block + COMMIT_INCLUSION_BLOCK_OFFSET;
    let target_epoch = head.reveal_epoch(inclusion_block).saturating_add(reveal_period_epochs);
    let budget = reveal_period_epochs.saturating_mul(MAX_TEMPO).saturating_add(MAX_TEMPO);
    let mut state = *head;
    for block in inclusion_block..=inclusion_block.saturating_add(budget) {
        if state.reveal_epoch(block) == target_epoch {
            return Ok(block);
        }
        state = state.after_block(block);
    }
    Err(TimelockError::RevealBlockNotFound(budget))
}

/// `bittensor-drand`'s round number for Unix time `unix_secs`:
/// `floor((unix_secs − genesis) / period)`, at least 1. (Quicknet's pulse for round `r` is
/// published at `genesis + (r − 1) × period`, so this round is already out at `unix_secs`.)
pub fn round_at(unix_secs: f64) -> u64 {
    // `as u64` saturates: a time before genesis gives 0, then 1.
    (((unix_secs - QUICKNET_GENESIS_TIME as f64) / QUICKNET_PERIOD as f64).floor() as u64).max(1)
}

/// The reveal round `bittensor-drand` 2.0.0's `get_encrypted_commit_v2` targets for a commit
/// against `head`: the quicknet round at `now_unix_secs + (first reveal block +
/// SECURITY_BLOCK_OFFSET − head block) × block_time_secs`. Computed in f64 as the original
/// does (pass `now_unix_secs` from `SystemTime` as `as_secs_f64`, `block_time_secs` 12.0 on
/// mainnet).
pub fn reveal_round(
    head: &EpochSchedule,
    reveal_period_epochs: u64,
    block_time_secs: f64,
    now_unix_secs: f64,
) -> Result<u64, TimelockError> {
    if !block_time_secs.is_finite() {
        return Err(TimelockError::BadBlockTime(block_time_secs));
    }
    let reveal_block = predict_first_reveal_block(head, reveal_period_epochs)?;
    let blocks = reveal_block.saturating_add(SECURITY_BLOCK_OFFSET).saturating_sub(head.current_block);
    Ok(round_at(now_unix_secs + blocks as f64 * block_time_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(last: u64, pending: u64, tempo: u16, since: u64, head: u64) -> EpochSchedule {
        EpochSchedule {
            last_epoch_block: last,
            pending_epoch_at: pending,
            subnet_epoch_index: 0,
            tempo,
            blocks_since_last_step: since,
            current_block: head,
        }
    }

    #[test]
    fn quicknet_public_key_parses() {
        let bytes = hex::decode(QUICKNET_PUBLIC_KEY_HEX).unwrap_or_default();
        assert_eq!(bytes.len(), G2_COMPRESSED_LEN);
        assert!(PublicKeyGroup::deserialize_compressed(&bytes[..]).is_ok());
    }

    /// `bittensor-drand`'s `src/epoch_schedule_vectors.rs` (pinned there against subtensor's
    /// `tempo_control.rs` tests): "cycle_reset" → 60, "pending_fires_before_auto" → 95,
    /// "tempo_zero" → error.
    #[test]
    fn reveal_block_matches_bittensor_drands_vectors() {
        assert_eq!(predict_first_reveal_block(&schedule(10, 0, 50, 0, 10), 1), Ok(60));
        assert_eq!(predict_first_reveal_block(&schedule(80, 95, 20, 0, 91), 1), Ok(95));
        assert_eq!(predict_first_reveal_block(&schedule(10, 0, 0, 0, 10), 1), Err(TimelockError::TempoZero));
    }

    #[test]
    fn layout_length_and_round_trip_shape() {
        let hotkey = PublicKey::from_bytes([7; 32]);
        let ct = encrypt_weights(&hotkey, &[1, 2], &[3, 4], 9, 1000);
        let ct = ct.unwrap_or_default();
        // payload: 1+32 hotkey, 1+4 uids, 1+4 values, 8 version key = 51 bytes.
        assert_eq!(ct.len(), 244 + 51);
        assert!(parse_ciphertext(&ct).is_ok());
        assert!(matches!(parse_ciphertext(&ct[..ct.len() - 1]), Err(TimelockError::MalformedCiphertext(_))));
        assert!(matches!(
            encrypt_weights(&hotkey, &[1], &[], 0, 1),
            Err(TimelockError::LengthMismatch { uids: 1, values: 0 })
        ));
        // 244 + 33 + 2 × (2 + 2n) + 8 = 289 + 4n bytes: n = 1177 fits in 5000, 1178 does not.
        let n: Vec<u16> = (0..1177).collect();
        assert_eq!(encrypt_weights(&hotkey, &n, &n, 0, 1).map(|c| c.len()), Ok(4997));
        let n: Vec<u16> = (0..1178).collect();
        assert_eq!(encrypt_weights(&hotkey, &n, &n, 0, 1), Err(TimelockError::CommitTooLarge(5001)));
    }

    /// Why the wire layout is written by hand: `timelock` 0.3.0's own serialization of its
    /// `TLECiphertext` lacks the two 8-byte length prefixes of `V` and `W` that the `tle`
    /// crate's (and so subtensor's and `bittensor-drand`'s) has.
    #[test]
    fn timelock_crates_own_serialization_is_16_bytes_short() {
        let ct = tle::<TinyBLS381, AESGCMBlockCipherProvider, OsRng>(
            quicknet_public_key(),
            [1; 32],
            b"x",
            round_identity(1000),
            OsRng,
        );
        let mut native = Vec::new();
        assert!(ct.map(|ct| ct.serialize_compressed(&mut native)).is_ok());
        assert_eq!(native.len() + 16, 244 + 1);
    }

    #[test]
    fn round_at_genesis_and_after() {
        assert_eq!(round_at(QUICKNET_GENESIS_TIME as f64), 1);
        assert_eq!(round_at(0.0), 1);
        assert_eq!(round_at(QUICKNET_GENESIS_TIME as f64 + 3001.5), 1000);
    }
}
