//! Tests for the epoch: ports of subtensor's `tests/epoch.rs` scenarios with their published
//! intermediate vectors, compared through the fixed-point `Debug` form (which prints the
//! shortest decimal that identifies the exact fixed-point value, so equal strings mean
//! equal bits at the printed precision).

use super::*;

/// Formats any Debug value; used to compare against subtensor's logged vectors.
fn dbg<T: std::fmt::Debug>(v: &T) -> String {
    format!("{v:?}")
}

#[test]
fn fixed_debug_format_matches_subtensor_logs() {
    let v = vec![
        I32F32::from_num(1) / I32F32::from_num(10),
        I32F32::from_num(0),
        I32F32::from_num(1),
    ];
    assert_eq!(dbg(&v), "[0.0999999999, 0, 1]");
}

/// A subnet's mutable state between epochs, as the chain would keep it in storage.
struct Subnet {
    params: EpochParams,
    current_block: u64,
    last_tempo_block: u64,
    stake: Vec<u64>,
    last_update: Vec<u64>,
    block_at_registration: Vec<u64>,
    validator_permit: Vec<bool>,
    weights: Vec<Vec<(u16, u16)>>,
    bonds: Vec<Vec<(u16, u16)>>,
}

impl Subnet {
    fn new(params: EpochParams, stake: Vec<u64>) -> Self {
        let n = stake.len();
        Self {
            params,
            current_block: 0,
            last_tempo_block: 0,
            stake,
            last_update: vec![0; n],
            block_at_registration: vec![0; n],
            validator_permit: vec![false; n],
            weights: vec![Vec::new(); n],
            bonds: vec![Vec::new(); n],
        }
    }

    /// `set_weights` as the chain stores it: re-upscaled values, `LastUpdate = now`.
    fn set_weights(&mut self, uid: usize, uids: &[u16], values: &[u16]) {
        let up = crate::math::vec_u16_max_upscale_to_u16(values);
        self.weights[uid] = uids.iter().copied().zip(up).collect();
        self.last_update[uid] = self.current_block;
    }

    /// Run an epoch and persist permits and bonds, like `persist_*_epoch_terms`.
    fn epoch(&mut self, rao: u64) -> (EpochOutput, EpochTrace) {
        let input = EpochInput {
            current_block: self.current_block,
            last_tempo_block: self.last_tempo_block,
            stake: &self.stake,
            last_update: &self.last_update,
            block_at_registration: &self.block_at_registration,
            validator_permit: &self.validator_permit,
            weights: &self.weights,
            bonds: &self.bonds,
            commit_blocks: None,
        };
        let (out, trace) = run_epoch_traced(&self.params, &input, rao).expect("valid input");
        self.validator_permit.clone_from(&out.new_validator_permit);
        self.bonds.clone_from(&out.new_bonds);
        (out, trace)
    }

    /// Stored bond `bonds[i][j]` as `get_bonds` returns it (0 when absent).
    fn bond(&self, i: usize, j: u16) -> u16 {
        self.bonds[i]
            .iter()
            .find(|(c, _)| *c == j)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    }
}

/// Port of subtensor `tests/epoch.rs::test_bonds` (classic bonds, sparse epoch), with every
/// intermediate vector from its comments. The original masks bonds by the old
/// `last_update_i <= reg_j` rule; registrations are at block 0 and `last_tempo_block` is 1 here
/// so neither rule masks anything, as in the original run.
#[test]
fn test_bonds() {
    let params = EpochParams {
        max_allowed_validators: 8,
        ..EpochParams::default()
    };
    let mut net = Subnet::new(params, vec![1, 2, 3, 4, 0, 0, 0, 0]);
    net.last_tempo_block = 1;
    // First epoch issues permits.
    net.epoch(1_000_000_000);
    net.current_block = 1;
    for uid in 0..4 {
        net.set_weights(
            uid,
            &[4, 5, 6, 7],
            &[u16::MAX / 4, u16::MAX / 2, (u16::MAX / 4) * 3, u16::MAX],
        );
    }
    let (out, t) = net.epoch(1_000_000_000);
    assert_eq!(
        dbg(&t.stake),
        "[0.0999999999, 0.2, 0.2999999998, 0.4, 0, 0, 0, 0]"
    );
    assert_eq!(
        dbg(&t.active_stake),
        "[0.0999999999, 0.2, 0.2999999998, 0.4, 0, 0, 0, 0]"
    );
    let w_norm = "[(4, 0.0999975584), (5, 0.2000012207), (6, 0.2999926754), (7, 0.400008545)]";
    assert_eq!(
        dbg(&t.weights),
        format!("[{w_norm}, {w_norm}, {w_norm}, {w_norm}, [], [], [], []]")
    );
    assert_eq!(
        dbg(&t.consensus),
        "[0, 0, 0, 0, 0.0999975584, 0.2000012207, 0.2999926754, 0.400008545]"
    );
    assert_eq!(dbg(&t.clipped_weights), dbg(&t.weights));
    assert_eq!(
        dbg(&t.validator_trust),
        "[0.9999999995, 0.9999999995, 0.9999999995, 0.9999999995, 0, 0, 0, 0]"
    );
    assert_eq!(
        dbg(&t.ranks),
        "[0, 0, 0, 0, 0.099997558, 0.2000012202, 0.2999926745, 0.4000085443]"
    );
    assert_eq!(
        dbg(&t.incentive),
        "[0, 0, 0, 0, 0.0999975582, 0.2000012207, 0.2999926752, 0.4000085455]"
    );
    assert_eq!(dbg(&t.bonds), "[[], [], [], [], [], [], [], []]");
    assert_eq!(
        dbg(&t.bonds_delta),
        "[[(4, 0.0999999996), (5, 0.0999999999), (6, 0.0999999994), (7, 0.0999999996)], \
[(4, 0.1999999995), (5, 0.2), (6, 0.1999999997), (7, 0.1999999997)], \
[(4, 0.299999999), (5, 0.2999999998), (6, 0.3), (7, 0.3)], \
[(4, 0.4000000013), (5, 0.4), (6, 0.4000000004), (7, 0.4000000001)], [], [], [], []]"
    );
    assert_eq!(
        dbg(&t.ema_bonds),
        "[[(4, 0.0999999982), (5, 0.0999999985), (6, 0.099999998), (7, 0.099999998)], \
[(4, 0.199999999), (5, 0.1999999995), (6, 0.1999999986), (7, 0.1999999986)], \
[(4, 0.2999999996), (5, 0.3000000003), (6, 0.3000000012), (7, 0.3000000012)], \
[(4, 0.4000000027), (5, 0.4000000013), (6, 0.4000000018), (7, 0.4000000018)], [], [], [], []]"
    );
    assert_eq!(
        dbg(&t.dividends),
        "[0.0999999978, 0.1999999983, 0.3000000012, 0.4000000022, 0, 0, 0, 0]"
    );
    assert_eq!(
        dbg(&t.normalized_combined_emission),
        "[0.0499999989, 0.0999999992, 0.1500000006, 0.2000000011, 0.049998779, 0.1000006103, 0.1499963375, 0.2000042726]"
    );
    assert_eq!(
        out.emission,
        [
            49999998, 99999999, 150000000, 200000001, 49998779, 100000610, 149996337, 200004272
        ]
    );
    // Server and validator emission partition the combined emission per uid.
    assert_eq!(out.server_emission[..4], [0, 0, 0, 0]);
    assert_eq!(out.validator_emission[4..], [0, 0, 0, 0]);
    assert_eq!(
        [
            net.bond(0, 4),
            net.bond(1, 4),
            net.bond(2, 4),
            net.bond(3, 4)
        ],
        [16383, 32767, 49151, 65535]
    );

    // === Self-weight only on val1.
    net.current_block = 2;
    net.set_weights(0, &[0], &[u16::MAX]);
    let (out, t) = net.epoch(1_000_000_000);
    assert_eq!(
        dbg(&t.weights),
        format!("[[], {w_norm}, {w_norm}, {w_norm}, [], [], [], []]")
    );
    assert_eq!(
        dbg(&t.ranks),
        "[0, 0, 0, 0, 0.0899978022, 0.1800010982, 0.2699934072, 0.36000769]"
    );
    assert_eq!(
        dbg(&t.consensus),
        "[0, 0, 0, 0, 0.0999975584, 0.2000012207, 0.2999926754, 0.400008545]"
    );
    assert_eq!(
        dbg(&t.validator_trust),
        "[0, 0.9999999995, 0.9999999995, 0.9999999995, 0, 0, 0, 0]"
    );
    assert_eq!(
        dbg(&t.incentive),
        "[0, 0, 0, 0, 0.0999975582, 0.2000012207, 0.2999926754, 0.4000085455]"
    );
    assert_eq!(
        dbg(&t.bonds),
        "[[(4, 0.0999963377), (5, 0.0999963377), (6, 0.0999963377), (7, 0.0999963377)], \
[(4, 0.1999987792), (5, 0.1999987792), (6, 0.1999987792), (7, 0.1999987792)], \
[(4, 0.3000012205), (5, 0.3000012205), (6, 0.3000012205), (7, 0.3000012205)], \
[(4, 0.400003662), (5, 0.400003662), (6, 0.400003662), (7, 0.400003662)], [], [], [], []]"
    );
    assert_eq!(
        dbg(&t.bonds_delta),
        "[[], [(4, 0.2222222215), (5, 0.222222222), (6, 0.2222222218), (7, 0.2222222218)], \
[(4, 0.3333333323), (5, 0.3333333333), (6, 0.3333333333), (7, 0.3333333333)], \
[(4, 0.4444444457), (5, 0.4444444443), (6, 0.4444444447), (7, 0.4444444445)], [], [], [], []]"
    );
    assert_eq!(
        dbg(&t.ema_bonds),
        "[[(4, 0.0899967037), (5, 0.0899967037), (6, 0.0899967037), (7, 0.0899967037)], \
[(4, 0.2022211235), (5, 0.2022211235), (6, 0.2022211235), (7, 0.2022211235)], \
[(4, 0.3033344317), (5, 0.3033344317), (6, 0.3033344317), (7, 0.3033344317)], \
[(4, 0.4044477409), (5, 0.4044477406), (6, 0.4044477406), (7, 0.4044477406)], [], [], [], []]"
    );
    assert_eq!(
        dbg(&t.dividends),
        "[0.0899967032, 0.2022211233, 0.303334432, 0.404447741, 0, 0, 0, 0]"
    );
    assert_eq!(
        out.emission,
        [
            44998351, 101110561, 151667215, 202223870, 49998779, 100000610, 149996337, 200004272
        ]
    );
    assert_eq!(
        [
            net.bond(0, 4),
            net.bond(1, 4),
            net.bond(2, 4),
            net.bond(3, 4)
        ],
        [14582, 32767, 49151, 65535]
    );

    // === Self-weight only on val2.
    net.current_block = 3;
    net.set_weights(1, &[1], &[u16::MAX]);
    let (out, t) = net.epoch(1_000_000_000);
    assert_eq!(
        dbg(&t.ranks),
        "[0, 0, 0, 0, 0.0699982906, 0.1400008542, 0.2099948723, 0.2800059812]"
    );
    assert_eq!(
        dbg(&t.bonds),
        "[[(4, 0.0899929027), (5, 0.0899929027), (6, 0.0899929027), (7, 0.0899929027)], \
[(4, 0.2022217421), (5, 0.2022217421), (6, 0.2022217421), (7, 0.2022217421)], \
[(4, 0.303335699), (5, 0.303335699), (6, 0.303335699), (7, 0.303335699)], \
[(4, 0.404449656), (5, 0.404449656), (6, 0.404449656), (7, 0.404449656)], [], [], [], []]"
    );
    assert_eq!(
        dbg(&t.ema_bonds),
        "[[(4, 0.0809936123), (5, 0.0809936123), (6, 0.0809936123), (7, 0.0809936123)], \
[(4, 0.181999568), (5, 0.181999568), (6, 0.181999568), (7, 0.181999568)], \
[(4, 0.3158592717), (5, 0.315859272), (6, 0.315859272), (7, 0.315859272)], \
[(4, 0.4211475477), (5, 0.4211475474), (6, 0.4211475474), (7, 0.4211475474)], [], [], [], []]"
    );
    assert_eq!(
        dbg(&t.dividends),
        "[0.0809936118, 0.1819995677, 0.3158592721, 0.421147548, 0, 0, 0, 0]"
    );
    assert_eq!(
        out.emission,
        [
            40496805, 90999783, 157929636, 210573773, 49998779, 100000610, 149996337, 200004272
        ]
    );
    assert_eq!(
        [
            net.bond(0, 4),
            net.bond(1, 4),
            net.bond(2, 4),
            net.bond(3, 4)
        ],
        [12603, 28321, 49151, 65535]
    );

    // === Self-weight only on val3: only val4 (40% < κ) weights servers, so consensus is 0.
    net.current_block = 4;
    net.set_weights(2, &[2], &[u16::MAX]);
    let (out, t) = net.epoch(1_000_000_000);
    assert_eq!(dbg(&t.ranks), "[0, 0, 0, 0, 0, 0, 0, 0]");
    assert_eq!(dbg(&t.consensus), "[0, 0, 0, 0, 0, 0, 0, 0]");
    assert_eq!(dbg(&t.clipped_weights), "[[], [], [], [], [], [], [], []]");
    assert_eq!(
        dbg(&t.bonds),
        "[[(4, 0.0809909387), (5, 0.0809909387), (6, 0.0809909387), (7, 0.0809909387)], \
[(4, 0.1819998713), (5, 0.1819998713), (6, 0.1819998713), (7, 0.1819998713)], \
[(4, 0.3158601632), (5, 0.3158601632), (6, 0.3158601632), (7, 0.3158601632)], \
[(4, 0.4211490264), (5, 0.4211490264), (6, 0.4211490264), (7, 0.4211490264)], [], [], [], []]"
    );
    assert_eq!(
        dbg(&t.ema_bonds),
        "[[(4, 0.0809909385), (5, 0.0809909385), (6, 0.0809909385), (7, 0.0809909385)], \
[(4, 0.1819998713), (5, 0.1819998713), (6, 0.1819998713), (7, 0.1819998713)], \
[(4, 0.3158601632), (5, 0.3158601632), (6, 0.3158601632), (7, 0.3158601632)], \
[(4, 0.4211490266), (5, 0.4211490266), (6, 0.4211490266), (7, 0.4211490266)], [], [], [], []]"
    );
    assert_eq!(
        dbg(&t.normalized_combined_emission),
        "[0.0999999999, 0.2, 0.2999999998, 0.4, 0, 0, 0, 0]"
    );
    assert_eq!(
        out.emission,
        [99999999, 199999999, 299999999, 399999999, 0, 0, 0, 0]
    );
    assert_eq!(
        [
            net.bond(0, 7),
            net.bond(1, 7),
            net.bond(2, 7),
            net.bond(3, 7)
        ],
        [12602, 28320, 49150, 65535]
    );

    // === val3 -> srv4: 1.
    net.current_block = 5;
    net.set_weights(2, &[7], &[u16::MAX]);
    let (out, t) = net.epoch(1_000_000_000);
    assert_eq!(dbg(&t.consensus), "[0, 0, 0, 0, 0, 0, 0, 0.400008545]");
    assert_eq!(
        dbg(&t.clipped_weights),
        "[[], [], [(7, 0.400008545)], [(7, 0.400008545)], [], [], [], []]"
    );
    assert_eq!(
        dbg(&t.validator_trust),
        "[0, 0, 0.400008545, 0.400008545, 0, 0, 0, 0]"
    );
    assert_eq!(dbg(&t.incentive), "[0, 0, 0, 0, 0, 0, 0, 1]");
    assert_eq!(
        dbg(&t.bonds_delta),
        "[[], [], [(7, 0.4285714284)], [(7, 0.5714285714)], [], [], [], []]"
    );
    assert_eq!(
        dbg(&t.ema_bonds),
        "[[(4, 0.0809860737), (5, 0.0809860737), (6, 0.0809860737), (7, 0.0728874663)], \
[(4, 0.1819969537), (5, 0.1819969537), (6, 0.1819969537), (7, 0.1637972582)], \
[(4, 0.3158598263), (5, 0.3158598263), (6, 0.3158598263), (7, 0.3271309866)], \
[(4, 0.421157146), (5, 0.421157146), (6, 0.421157146), (7, 0.4361842885)], [], [], [], []]"
    );
    assert_eq!(
        dbg(&t.dividends),
        "[0.0728874663, 0.1637972582, 0.3271309866, 0.4361842885, 0, 0, 0, 0]"
    );
    assert_eq!(
        out.emission,
        [36443733, 81898628, 163565493, 218092144, 0, 0, 0, 500000000]
    );
    assert_eq!(
        [
            net.bond(0, 7),
            net.bond(1, 7),
            net.bond(2, 7),
            net.bond(3, 7)
        ],
        [10951, 24609, 49150, 65535]
    );

    net.current_block = 6;
    let (out, t) = net.epoch(1_000_000_000);
    assert_eq!(
        dbg(&t.dividends),
        "[0.0655988548, 0.1474132247, 0.3372762585, 0.4497116616, 0, 0, 0, 0]"
    );
    assert_eq!(
        out.emission,
        [32799427, 73706612, 168638129, 224855830, 0, 0, 0, 500000000]
    );
    assert_eq!(
        [
            net.bond(0, 7),
            net.bond(1, 7),
            net.bond(2, 7),
            net.bond(3, 7)
        ],
        [9559, 21482, 49150, 65535]
    );

    net.current_block = 7;
    let (out, t) = net.epoch(1_000_000_000);
    assert_eq!(
        dbg(&t.dividends),
        "[0.0590361361, 0.1326722752, 0.3464062694, 0.4618853189, 0, 0, 0, 0]"
    );
    assert_eq!(
        out.emission,
        [29518068, 66336137, 173203134, 230942659, 0, 0, 0, 500000000]
    );
    assert_eq!(
        [
            net.bond(0, 7),
            net.bond(1, 7),
            net.bond(2, 7),
            net.bond(3, 7)
        ],
        [8376, 18824, 49150, 65535]
    );

    net.current_block = 8;
    let (out, t) = net.epoch(1_000_000_000);
    assert_eq!(
        dbg(&t.bonds),
        "[[(4, 0.0809714776), (5, 0.0809714776), (6, 0.0809714776), (7, 0.0590337245)], \
[(4, 0.1819882002), (5, 0.1819882002), (6, 0.1819882002), (7, 0.1326708249)], \
[(4, 0.3158588156), (5, 0.3158588156), (6, 0.3158588156), (7, 0.3464073015)], \
[(4, 0.421181506), (5, 0.421181506), (6, 0.421181506), (7, 0.4618881487)], [], [], [], []]"
    );
    assert_eq!(
        dbg(&t.dividends),
        "[0.053130352, 0.1194037423, 0.3546237142, 0.472842191, 0, 0, 0, 0]"
    );
    assert_eq!(
        out.emission,
        [26565175, 59701871, 177311856, 236421095, 0, 0, 0, 500000000]
    );
}
