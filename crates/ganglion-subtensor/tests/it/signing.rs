//! Our `Keypair` as a subxt signer: the same keys as subxt-signer's dev accounts, and
//! signatures each side verifies of the other.

use ganglion_core::keys::{Keypair, PublicKey, Signature};
use ganglion_subtensor::KeypairSigner;
use subxt::PolkadotConfig;
use subxt::tx::Signer;
use subxt::utils::MultiSignature;
use subxt_signer::sr25519;

fn ours(uri: &str) -> Keypair {
    Keypair::from_uri(uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
}

#[test]
fn dev_keys_match_subxt_signer() {
    for (uri, theirs) in [
        ("//Alice", sr25519::dev::alice()),
        ("//Bob", sr25519::dev::bob()),
        ("//Charlie", sr25519::dev::charlie()),
    ] {
        let signer = KeypairSigner::new(ours(uri));
        assert_eq!(signer.public().as_bytes(), &theirs.public_key().0, "{uri}");
        let account = <KeypairSigner as Signer<PolkadotConfig>>::account_id(&signer);
        assert_eq!(account.0, theirs.public_key().0, "{uri}: account id");
    }
}

#[test]
fn our_signatures_verify_with_subxt_signer_and_back() {
    let signer = KeypairSigner::new(ours("//Alice"));
    let alice = sr25519::dev::alice();
    // Short payloads and one over 256 bytes: subxt hashes long v4 signer payloads before
    // handing them to the signer, so the signer signs any length as given.
    for payload in [b"ganglion".to_vec(), vec![0xab; 300]] {
        let MultiSignature::Sr25519(sig) =
            <KeypairSigner as Signer<PolkadotConfig>>::sign(&signer, &payload)
        else {
            panic!("our signer must produce MultiSignature::Sr25519");
        };
        assert!(
            sr25519::verify(&sr25519::Signature(sig), &payload, &alice.public_key()),
            "subxt-signer rejects our signature"
        );
        let mut tampered = payload.clone();
        tampered[0] ^= 1;
        assert!(
            !sr25519::verify(&sr25519::Signature(sig), &tampered, &alice.public_key()),
            "a tampered payload must not verify"
        );

        let theirs = alice.sign(&payload);
        assert!(
            PublicKey::from_bytes(alice.public_key().0)
                .verify(&payload, &Signature::from_bytes(theirs.0)),
            "we reject subxt-signer's signature"
        );
    }
}
