//! SS58 addresses: `base58(prefix ‖ pubkey ‖ blake2b-512("SS58PRE" ‖ prefix ‖ pubkey)[..2])`.
//!
//! Prefixes 0–63 take one byte, 64–16383 take two (Substrate's encoding). Bittensor uses 42.

use blake2::{Blake2b512, Digest};

use crate::error::{CoreError, CoreResult};

/// The SS58 prefix Bittensor (and generic Substrate) addresses use.
pub const BITTENSOR_PREFIX: u16 = 42;

const CHECKSUM_LEN: usize = 2;
const MAX_ADDRESS_CHARS: usize = 64;

fn checksum(data: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut hasher = Blake2b512::new();
    hasher.update(b"SS58PRE");
    hasher.update(data);
    let hash = hasher.finalize();
    [hash[0], hash[1]]
}

fn prefix_bytes(prefix: u16) -> Vec<u8> {
    if prefix < 64 {
        vec![prefix as u8]
    } else {
        // Substrate's two-byte form: the lower six bits of the first byte carry the
        // low bits of the prefix shifted, the second the high bits.
        let first = (((prefix & 0b0000_0000_1111_1100) as u8) >> 2) | 0b0100_0000;
        let second = ((prefix >> 8) as u8) | (((prefix & 0b0000_0000_0000_0011) as u8) << 6);
        vec![first, second]
    }
}

/// Encodes a 32-byte public key as an SS58 address with the given prefix (must be < 16384).
pub fn encode(public_key: &[u8; 32], prefix: u16) -> String {
    let prefix = prefix & 0b0011_1111_1111_1111;
    let mut data = prefix_bytes(prefix);
    data.extend_from_slice(public_key);
    let sum = checksum(&data);
    data.extend_from_slice(&sum);
    bs58::encode(data).into_string()
}

/// Decodes an SS58 address into its prefix and 32-byte public key, verifying the checksum.
pub fn decode(address: &str) -> CoreResult<(u16, [u8; 32])> {
    let invalid = |reason| CoreError::InvalidSs58 {
        address: address.chars().take(MAX_ADDRESS_CHARS).collect(),
        reason,
    };
    if address.is_empty() {
        return Err(invalid("it is empty"));
    }
    if address.len() > MAX_ADDRESS_CHARS {
        return Err(invalid("it is too long for an SS58 address"));
    }
    let data = bs58::decode(address)
        .into_vec()
        .map_err(|_| invalid("it contains characters outside the base58 alphabet"))?;
    let (prefix, prefix_len) = match data.first() {
        None => return Err(invalid("it is empty")),
        Some(&b) if b < 64 => (u16::from(b), 1),
        Some(&b) if b < 128 => {
            let second = *data.get(1).ok_or_else(|| invalid("it is truncated"))?;
            let lower = (u16::from(b) << 2) | (u16::from(second) >> 6);
            let upper = u16::from(second & 0b0011_1111);
            ((lower & 0b1111_1111) | (upper << 8), 2)
        }
        Some(_) => return Err(invalid("its prefix byte is reserved")),
    };
    if data.len() != prefix_len + 32 + CHECKSUM_LEN {
        return Err(invalid("it does not hold a 32-byte public key"));
    }
    let body_len = prefix_len + 32;
    if checksum(&data[..body_len]) != data[body_len..] {
        return Err(invalid("its checksum does not match (a typo?)"));
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&data[prefix_len..body_len]);
    Ok((prefix, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE_HEX: &str = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d";
    const ALICE_SS58: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

    fn alice() -> [u8; 32] {
        let mut key = [0u8; 32];
        hex::decode_to_slice(ALICE_HEX, &mut key).expect("constant hex");
        key
    }

    #[test]
    fn encodes_alice_with_prefix_42() {
        assert_eq!(encode(&alice(), 42), ALICE_SS58);
    }

    #[test]
    fn round_trips_one_and_two_byte_prefixes() {
        for prefix in [0u16, 2, 42, 63, 64, 255, 1000, 16383] {
            let address = encode(&alice(), prefix);
            assert_eq!(decode(&address).expect("round trip"), (prefix, alice()), "prefix {prefix}");
        }
    }

    #[test]
    fn polkadot_prefix_0_matches_known_address() {
        // Alice on Polkadot (prefix 0), as printed by subkey.
        assert_eq!(encode(&alice(), 0), "15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5");
    }

    #[test]
    fn rejects_bad_checksum_and_garbage() {
        let mut tampered = ALICE_SS58.to_string();
        tampered.replace_range(10..11, "Y");
        assert!(matches!(decode(&tampered), Err(CoreError::InvalidSs58 { .. })));
        assert!(decode("").is_err());
        assert!(decode("0OIl").is_err(), "non-base58 characters");
        assert!(decode("5Grwva").is_err(), "truncated");
        assert!(decode(&"5".repeat(500)).is_err(), "too long");
        let err = decode(&tampered).expect_err("tampered").to_string();
        assert!(err.contains("checksum"), "{err}");
    }
}
