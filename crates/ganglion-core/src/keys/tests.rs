//! Vectors from spec/chain.md §5 and from the `bittensor-wallet` package (btwallet 4.1.1).

use super::*;

const PHRASE: &str = "old leopard transfer rib spatial phone calm indicate online fire caution review";

#[test]
fn mnemonic_vector_from_btwallet_tests() {
    let keypair = Keypair::from_phrase(PHRASE, None).expect("valid phrase");
    assert_eq!(keypair.public().to_ss58(), "5HDvhV6WDCjCKyrXqGQSDYqQAzkzabNhctmiDYEqgBC66BsX");
    assert_eq!(
        keypair.public().to_hex(),
        "0xe4359ad3e2716c539a1d663ebd0a51bdc5c98a12e663bb4c4402db47828c9446"
    );
    assert_eq!(keypair.phrase(), Some(PHRASE));
    // Extra spaces are normalised, as Substrate does.
    let spaced = PHRASE.replace(' ', "   ");
    assert_eq!(Keypair::from_phrase(&spaced, None).expect("valid").public(), keypair.public());
}

#[test]
fn dev_uris_match_substrate() {
    // Printed by bittensor_wallet.Keypair.create_from_uri (sp-core underneath).
    let cases = [
        ("//Alice", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"),
        ("//Alice//stash", "5GNJqTPyNqANBkUVMN1LPPrxXnFouWXoe2wNSmmEoLctxiZY"),
        ("//Bob/soft", "5DUkqpVPduPrtphzaV3dbheRtas5FbvYyF1fFYetpD8M3bvG"),
        ("//Alice/1", "5FUdx3xPJdh2ZdD7DwPQRN2eMAFVUKpfPeoEZZiSraow9iVQ"),
        ("//0x1234", "5DqRiB7pu1bhbxL4UrYc9M8kiUB3iyZxQRrWp4QuWbe7dqeK"),
        ("//Alice///pw", "5CVNhgaHCEe41RKB2QgscUnzJmfZScb6EgYdXrJshoCY8CjY"),
        (
            "bottom drive obey lake curtain smoke basket hold race lonely fit walk//Alice",
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
        ),
    ];
    for (uri, expected) in cases {
        let keypair = Keypair::from_uri(uri).unwrap_or_else(|err| panic!("{uri}: {err}"));
        assert_eq!(keypair.public().to_ss58(), expected, "{uri}");
    }
}

#[test]
fn hard_paths_keep_the_seed_soft_paths_drop_it() {
    let hard = Keypair::from_uri("//Alice").expect("uri");
    let seed = *hard.seed().expect("hard-derived keys have a seed");
    assert_eq!(Keypair::from_seed(&seed).expect("seed").public(), hard.public());
    let soft = Keypair::from_uri("//Alice/soft").expect("uri");
    assert!(soft.seed().is_none());
    // The 64-byte secret always round-trips.
    let again = Keypair::from_secret_bytes(&soft.secret_bytes()).expect("secret");
    assert_eq!(again.public(), soft.public());
}

#[test]
fn long_junctions_are_hashed() {
    let long = "a".repeat(40);
    let key = Keypair::from_uri(&format!("//{long}")).expect("uri");
    assert_ne!(key.public(), Keypair::from_uri("//Alice").expect("uri").public());
    assert_eq!(Junction::parse(&long, true), Junction::parse(&long, true));
    assert!(matches!(Junction::parse("1", false), Junction::Soft(code) if code[0] == 1 && code[1..8] == [0; 7]));
}

#[test]
fn sign_and_verify_including_bytes_wrapping() {
    let keypair = Keypair::from_uri("//Alice").expect("uri");
    let signature = keypair.sign(b"hello");
    assert!(keypair.public().verify(b"hello", &signature));
    assert!(!keypair.public().verify(b"hellO", &signature));
    let other = Keypair::from_uri("//Bob").expect("uri");
    assert!(!other.public().verify(b"hello", &signature));

    let wrapped = keypair.sign(b"<Bytes>hello</Bytes>");
    assert!(keypair.public().verify(b"hello", &wrapped), "wrapped signatures are accepted");

    let parsed = Signature::from_hex(&signature.to_hex()).expect("hex round trip");
    assert_eq!(parsed, signature);
}

#[test]
fn signature_from_btwallet_verifies() {
    // bittensor_wallet.Keypair.create_from_uri("//Alice").sign(b"ganglion"); sr25519 signatures
    // are randomised, so this is one fixed signature the reference produced.
    let signature = Signature::from_hex(
        "0x4a6d4507bcf192dd7862decc677f0425f6fdd93ca22236d0c9b43aec001119131cf7913ee4d3e0575c351d45fba2a6f1c4b40bc9e8cb678bde3f9bf6bc7f6786",
    )
    .expect("hex");
    let alice = Keypair::from_uri("//Alice").expect("uri").public();
    assert!(alice.verify(b"ganglion", &signature));
    assert!(!alice.verify(b"ganglioN", &signature));
    let mut flipped = *signature.as_bytes();
    flipped[5] ^= 1;
    assert!(!alice.verify(b"ganglion", &Signature::from_bytes(flipped)));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    assert!(matches!(Keypair::from_phrase("not a mnemonic at all", None), Err(CoreError::InvalidMnemonic(_))));
    assert!(Keypair::from_phrase(&PHRASE.replace("review", "abandon"), None).is_err(), "bad checksum word");
    assert!(Keypair::from_uri("0x1234//a").is_err(), "short seed");
    assert!(Keypair::from_uri("//").is_err(), "empty junction");
    assert!(Keypair::from_uri("bad!phrase//x").is_err());
    assert!(Signature::from_hex("0xzz").is_err());
    assert!(Signature::from_hex(&format!("0x{}", "ab".repeat(63))).is_err());
    assert!(PublicKey::from_hex("0x12").is_err());
    // Garbage public key bytes do not verify (and do not panic).
    let junk = PublicKey::from_bytes([0xff; 32]);
    assert!(!junk.verify(b"x", &Signature::from_bytes([0; 64])));
}

#[test]
fn generated_keys_have_phrases_of_the_requested_length() {
    for words in [12, 15, 18, 21, 24] {
        let keypair = Keypair::generate(words).expect("generate");
        let phrase = keypair.phrase().expect("generated keys carry their phrase");
        assert_eq!(phrase.split(' ').count(), words);
        assert_eq!(Keypair::from_phrase(phrase, None).expect("phrase").public(), keypair.public());
    }
    assert!(Keypair::generate(13).is_err());
}

#[test]
fn compact_lengths() {
    assert_eq!(compact_len(0), vec![0]);
    assert_eq!(compact_len(63), vec![252]);
    assert_eq!(compact_len(64), vec![1, 1]);
    assert_eq!(compact_len(16383), vec![253, 255]);
    assert_eq!(compact_len(16384), vec![2, 0, 1, 0]);
}
