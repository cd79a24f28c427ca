//! Searching a slice of a challenge's keyspace: BLAKE2b-512 of `password ‖ salt` for many
//! candidates at once.
//!
//! # Candidate numbering
//! Candidate `k` of a difficulty-`d` challenge is the password whose character `j` is
//! `chars[(k / 10^j) % 10]`: the first characters vary fastest. The keyspace is split into
//! `low` (the first `min(d, 3)` positions, `10^min(d,3)` combinations, at most 1000) and
//! `outer` (the remaining positions): candidate `k = outer · low_count + low`. One outer
//! index fixes everything but the first three bytes, so a batch of candidates differs only
//! in message word 0.
//!
//! # Kernels
//! - [`Kernel::Avx512`]: BLAKE2b's compression on 8 candidates at once in AVX-512
//!   registers (`vpaddq`, `vpxorq`, `vprorq` through pulp's safe intrinsic token, so this
//!   crate stays free of `unsafe`), specialised for this job: a message of at most 28 bytes
//!   is one block whose words 4–15 are zero, so those additions are skipped, and only the
//!   first output word is computed (a match is then confirmed with the full digest).
//! - [`Kernel::Portable`]: `blake2b_simd::many::hash_many` (4-way AVX2 or 2-way SSE4.1,
//!   chosen by that crate at run time) over the same candidates, 8 jobs at a time.

use blake2b_simd::many::{HashManyJob, hash_many};
use serde::{Deserialize, Serialize};

/// Which hashing kernel searches the keyspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernel {
    /// The fastest one this CPU supports (AVX-512 if present, else portable).
    #[default]
    Auto,
    /// `blake2b_simd::many` (any CPU).
    Portable,
    /// The specialised 8-lane kernel (x86-64 with AVX-512F/BW/CD/DQ/VL only).
    Avx512,
}

impl Kernel {
    /// Resolves `Auto` and checks that the choice runs on this CPU.
    pub fn resolve(self) -> Result<Kernel, String> {
        self.resolve_for(avx512_available())
    }

    /// [`Kernel::resolve`] on a CPU with or without AVX-512: without it, `Auto` falls back
    /// to the portable kernel.
    fn resolve_for(self, has_avx512: bool) -> Result<Kernel, String> {
        match self {
            Kernel::Auto => Ok(if has_avx512 { Kernel::Avx512 } else { Kernel::Portable }),
            Kernel::Portable => Ok(Kernel::Portable),
            Kernel::Avx512 if has_avx512 => Ok(Kernel::Avx512),
            Kernel::Avx512 => Err("this CPU has no AVX-512 (F, BW, CD, DQ, VL); use --miner.kernel portable or auto".into()),
        }
    }

    /// Lower-case name, as configured.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Auto => "auto",
            Kernel::Portable => "portable",
            Kernel::Avx512 => "avx512",
        }
    }
}

/// Whether the AVX-512 kernel can run here.
pub fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        pulp::x86::V4::try_new().is_some()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Everything about a challenge the kernels need, precomputed once.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Password length.
    pub difficulty: usize,
    /// The 10 password characters (bytes; the charset is ASCII).
    pub chars: [u8; 10],
    /// Salt bytes (16 ASCII hex digits).
    pub salt: [u8; 16],
    /// Number of low combinations (`10^min(d,3)`).
    pub low_count: u64,
    /// Number of outer indices (`10^(d - min(d,3))`).
    pub outer_count: u64,
    /// Target digest.
    pub target: [u8; 64],
    /// Word 0 of the target digest (little-endian), the fast comparison.
    target0: u64,
    /// Word 0 contributions of the low positions, one per low index.
    low_words: Vec<u64>,
    /// Salt contributions to message words 0..4.
    salt_words: [u64; 4],
}

impl Layout {
    /// Precomputes the layout of a challenge. `chars` must be 10 ASCII bytes, `salt` 16.
    pub fn new(difficulty: u8, chars: [u8; 10], salt: [u8; 16], target: [u8; 64]) -> Layout {
        let difficulty = usize::from(difficulty.clamp(1, 12));
        let low_positions = difficulty.min(3);
        let low_count = 10u64.pow(low_positions as u32);
        let outer_count = 10u64.pow((difficulty - low_positions) as u32);
        let low_words = (0..low_count)
            .map(|low| {
                let mut word = 0u64;
                let mut rest = low;
                for position in 0..low_positions {
                    word |= u64::from(chars[(rest % 10) as usize]) << (8 * position);
                    rest /= 10;
                }
                word
            })
            .collect();
        let mut salt_words = [0u64; 4];
        for (i, &byte) in salt.iter().enumerate() {
            let at = difficulty + i;
            salt_words[at / 8] |= u64::from(byte) << (8 * (at % 8));
        }
        let target0 = u64::from_le_bytes([target[0], target[1], target[2], target[3], target[4], target[5], target[6], target[7]]);
        Layout { difficulty, chars, salt, low_count, outer_count, target, target0, low_words, salt_words }
    }

    /// Total number of candidates.
    pub fn keyspace(&self) -> u64 {
        self.low_count * self.outer_count
    }

    /// Message length in bytes.
    fn message_len(&self) -> usize {
        self.difficulty + self.salt.len()
    }

    /// Message words 0 and 1 contributed by the outer positions of `outer`, with the salt.
    fn outer_words(&self, outer: u64) -> (u64, u64) {
        let (mut w0, mut w1) = (self.salt_words[0], self.salt_words[1]);
        let mut rest = outer;
        for position in self.difficulty.min(3)..self.difficulty {
            let byte = u64::from(self.chars[(rest % 10) as usize]);
            rest /= 10;
            if position < 8 {
                w0 |= byte << (8 * position);
            } else {
                w1 |= byte << (8 * (position - 8));
            }
        }
        (w0, w1)
    }

    /// The password of candidate `index`.
    pub fn password(&self, index: u64) -> String {
        let mut rest = index;
        (0..self.difficulty)
            .map(|_| {
                let c = self.chars[(rest % 10) as usize];
                rest /= 10;
                char::from(c)
            })
            .collect()
    }

    /// The message (password ‖ salt) of candidate `index`, zero padded to 32 bytes.
    fn message(&self, index: u64) -> [u8; 32] {
        let mut out = [0u8; 32];
        let password = self.password(index);
        out[..self.difficulty].copy_from_slice(password.as_bytes());
        out[self.difficulty..self.message_len()].copy_from_slice(&self.salt);
        out
    }

    /// Whether candidate `index` hashes to the full target (confirms a word-0 match).
    fn confirm(&self, index: u64) -> bool {
        let message = self.message(index);
        blake2b_simd::blake2b(&message[..self.message_len()]).as_bytes() == self.target.as_slice()
    }
}

/// Searches outer indices `outer_start .. outer_start + outer_len` (clamped to the keyspace).
/// Returns the matching candidate index, if any.
pub fn search(kernel: Kernel, layout: &Layout, outer_start: u64, outer_len: u64) -> Option<u64> {
    let end = outer_start.saturating_add(outer_len).min(layout.outer_count);
    if outer_start >= end {
        return None;
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 | Kernel::Auto => match pulp::x86::V4::try_new() {
            Some(simd) => avx512::search(simd, layout, outer_start, end),
            None => search_portable(layout, outer_start, end),
        },
        _ => search_portable(layout, outer_start, end),
    }
}

fn search_portable(layout: &Layout, start: u64, end: u64) -> Option<u64> {
    let params = blake2b_simd::Params::new();
    let len = layout.message_len();
    let mut messages = [[0u8; 32]; 8];
    for outer in start..end {
        let (w0, w1) = layout.outer_words(outer);
        for message in messages.iter_mut() {
            // Bytes 8.. never change within an outer index.
            message[8..16].copy_from_slice(&w1.to_le_bytes());
            message[16..24].copy_from_slice(&layout.salt_words[2].to_le_bytes());
            message[24..32].copy_from_slice(&layout.salt_words[3].to_le_bytes());
        }
        let mut low = 0u64;
        while low < layout.low_count {
            for (lane, message) in messages.iter_mut().enumerate() {
                let index = (low + lane as u64) % layout.low_count;
                message[..8].copy_from_slice(&(w0 | layout.low_words[index as usize]).to_le_bytes());
            }
            let mut jobs: [HashManyJob<'_>; 8] = std::array::from_fn(|lane| HashManyJob::new(&params, &messages[lane][..len]));
            hash_many(jobs.iter_mut());
            for (lane, job) in jobs.iter().enumerate() {
                if job.to_hash().as_bytes() == layout.target.as_slice() {
                    let candidate = outer * layout.low_count + (low + lane as u64) % layout.low_count;
                    return Some(candidate);
                }
            }
            low += 8;
        }
    }
    None
}

/// Candidates hashed per step of the AVX-512 kernel.
const LANES: usize = 8;

const IV: [u64; 8] = [
    0x6a09e667f3bcc908,
    0xbb67ae8584caa73b,
    0x3c6ef372fe94f82b,
    0xa54ff53a5f1d36f1,
    0x510e527fade682d1,
    0x9b05688c2b3e6c1f,
    0x1f83d9abfb41bd6b,
    0x5be0cd19137e2179,
];

/// `h[0]` of the parameter block for an unkeyed 64-byte digest.
const H0: u64 = IV[0] ^ 0x0101_0040;

/// The AVX-512 kernel, written with explicit intrinsics through pulp's safe token (`V4`
/// proves the CPU has AVX-512F, so its methods are safe to call). Leaving the vectorising to
/// LLVM worked in release builds only: with debug assertions (the dev profile this
/// workspace tests in) the lane loops stayed scalar, 8× slower.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use core::arch::x86_64::__m512i;

    use pulp::x86::V4;

    use super::{H0, IV, LANES, Layout};

    #[inline(always)]
    fn add(s: V4, a: __m512i, b: __m512i) -> __m512i {
        s.avx512f._mm512_add_epi64(a, b)
    }

    #[inline(always)]
    fn xor_ror<const N: i32>(s: V4, a: __m512i, b: __m512i) -> __m512i {
        s.avx512f._mm512_ror_epi64::<N>(s.avx512f._mm512_xor_si512(a, b))
    }

    #[inline(always)]
    fn splat(s: V4, value: u64) -> __m512i {
        s.avx512f._mm512_set1_epi64(value as i64)
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn g(s: V4, v: &mut [__m512i; 16], a: usize, b: usize, c: usize, d: usize, x: Option<__m512i>, y: Option<__m512i>) {
        // `None` is a zero message word: the addition is skipped.
        v[a] = add(s, v[a], v[b]);
        if let Some(x) = x {
            v[a] = add(s, v[a], x);
        }
        v[d] = xor_ror::<32>(s, v[d], v[a]);
        v[c] = add(s, v[c], v[d]);
        v[b] = xor_ror::<24>(s, v[b], v[c]);
        v[a] = add(s, v[a], v[b]);
        if let Some(y) = y {
            v[a] = add(s, v[a], y);
        }
        v[d] = xor_ror::<16>(s, v[d], v[a]);
        v[c] = add(s, v[c], v[d]);
        v[b] = xor_ror::<63>(s, v[b], v[c]);
    }

    /// Message word `k`: words 0–3 carry the password and the salt, 4–15 are zero.
    macro_rules! word {
        ($m:ident, 0) => {
            Some($m[0])
        };
        ($m:ident, 1) => {
            Some($m[1])
        };
        ($m:ident, 2) => {
            Some($m[2])
        };
        ($m:ident, 3) => {
            Some($m[3])
        };
        ($m:ident, $other:tt) => {
            None
        };
    }

    macro_rules! round {
        ($s:ident, $v:ident, $m:ident, [$s0:tt, $s1:tt, $s2:tt, $s3:tt, $s4:tt, $s5:tt, $s6:tt, $s7:tt,
            $s8:tt, $s9:tt, $s10:tt, $s11:tt, $s12:tt, $s13:tt, $s14:tt, $s15:tt]) => {
            g($s, &mut $v, 0, 4, 8, 12, word!($m, $s0), word!($m, $s1));
            g($s, &mut $v, 1, 5, 9, 13, word!($m, $s2), word!($m, $s3));
            g($s, &mut $v, 2, 6, 10, 14, word!($m, $s4), word!($m, $s5));
            g($s, &mut $v, 3, 7, 11, 15, word!($m, $s6), word!($m, $s7));
            g($s, &mut $v, 0, 5, 10, 15, word!($m, $s8), word!($m, $s9));
            g($s, &mut $v, 1, 6, 11, 12, word!($m, $s10), word!($m, $s11));
            g($s, &mut $v, 2, 7, 8, 13, word!($m, $s12), word!($m, $s13));
            g($s, &mut $v, 3, 4, 9, 14, word!($m, $s14), word!($m, $s15));
        };
    }

    /// Word 0 of BLAKE2b-512 of 8 single-block messages of `len` bytes whose words 0–3
    /// are `m` (one lane per message) and words 4–15 are zero.
    #[inline(always)]
    fn first_word(s: V4, m: [__m512i; 4], len: u64) -> __m512i {
        let mut v = [s.avx512f._mm512_setzero_si512(); 16];
        for i in 0..8 {
            v[i] = splat(s, if i == 0 { H0 } else { IV[i] });
            v[i + 8] = splat(s, IV[i]);
        }
        v[12] = splat(s, IV[4] ^ len);
        v[14] = splat(s, !IV[6]);
        round!(s, v, m, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        round!(s, v, m, [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3]);
        round!(s, v, m, [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4]);
        round!(s, v, m, [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8]);
        round!(s, v, m, [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13]);
        round!(s, v, m, [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9]);
        round!(s, v, m, [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11]);
        round!(s, v, m, [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10]);
        round!(s, v, m, [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5]);
        round!(s, v, m, [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0]);
        round!(s, v, m, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        round!(s, v, m, [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3]);
        s.avx512f._mm512_xor_si512(splat(s, H0), s.avx512f._mm512_xor_si512(v[0], v[8]))
    }

    /// Word 0 of the digests of the 8 messages whose words 0–3 are `words[lane]`.
    #[cfg(test)]
    pub(super) fn first_words(s: V4, words: [[u64; 4]; LANES], len: u64) -> [u64; LANES] {
        struct Op {
            simd: V4,
            words: [[u64; 4]; LANES],
            len: u64,
        }
        impl pulp::WithSimd for Op {
            type Output = [u64; LANES];
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) -> [u64; LANES] {
                let s = self.simd;
                let lanes = |w: usize| -> __m512i { pulp::cast(std::array::from_fn::<u64, LANES, _>(|l| self.words[l][w])) };
                pulp::cast(first_word(s, [lanes(0), lanes(1), lanes(2), lanes(3)], self.len))
            }
        }
        pulp::Simd::vectorize(s, Op { simd: s, words, len })
    }

    /// Counts the candidates among `words` (message word 0 of each, a multiple of 8 of them;
    /// words 1–3 fixed) whose digest word 0 equals `target0`. Matches are rare (the answer,
    /// or a 2⁻⁶⁴ accident), so the caller finds the lane afterwards.
    pub(super) fn count_matches(s: V4, words: &[u64], m1: u64, m2: u64, m3: u64, len: u64, target0: u64) -> u32 {
        struct Op<'a> {
            simd: V4,
            words: &'a [u64],
            fixed: [u64; 3],
            len: u64,
            target0: u64,
        }
        impl pulp::WithSimd for Op<'_> {
            type Output = u32;
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) -> u32 {
                let s = self.simd;
                let fixed = [splat(s, self.fixed[0]), splat(s, self.fixed[1]), splat(s, self.fixed[2])];
                let target = splat(s, self.target0);
                let mut matches = 0u32;
                for chunk in self.words.chunks_exact(LANES) {
                    let mut lanes = [0u64; LANES];
                    lanes.copy_from_slice(chunk);
                    let m0: __m512i = pulp::cast(lanes);
                    let h0 = first_word(s, [m0, fixed[0], fixed[1], fixed[2]], self.len);
                    matches += s.avx512f._mm512_cmpeq_epi64_mask(h0, target).count_ones();
                }
                matches
            }
        }
        pulp::Simd::vectorize(s, Op { simd: s, words, fixed: [m1, m2, m3], len, target0 })
    }

    /// Searches outer indices `start..end`.
    pub(super) fn search(s: V4, layout: &Layout, start: u64, end: u64) -> Option<u64> {
        let len = layout.message_len() as u64;
        let low_count = layout.low_count as usize;
        // Word 0 of every low candidate of one outer index, padded to whole batches by
        // repeating the first candidates (hashing a few twice is cheaper than a tail loop).
        let mut words = vec![0u64; low_count.div_ceil(LANES) * LANES];
        for outer in start..end {
            let (w0, w1) = layout.outer_words(outer);
            for (i, word) in words.iter_mut().enumerate() {
                *word = w0 | layout.low_words[i % low_count];
            }
            if count_matches(s, &words, w1, layout.salt_words[2], layout.salt_words[3], len, layout.target0) > 0 {
                // Find the candidate and confirm it with the full digest.
                let found = (0..layout.low_count).map(|low| outer * layout.low_count + low).find(|&c| layout.confirm(c));
                if found.is_some() {
                    return found;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout_for(password: &str, chars: &str, salt: &str) -> Layout {
        let digest = blake2b_simd::blake2b(format!("{password}{salt}").as_bytes());
        let mut target = [0u8; 64];
        target.copy_from_slice(digest.as_bytes());
        let mut c = [0u8; 10];
        c.copy_from_slice(chars.as_bytes());
        let mut s = [0u8; 16];
        s.copy_from_slice(salt.as_bytes());
        Layout::new(password.len() as u8, c, s, target)
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx512_first_words_match_blake2b_for_every_length() {
        let Some(simd) = pulp::x86::V4::try_new() else {
            eprintln!("skipped: no AVX-512 on this CPU (the portable kernel is tested below)");
            return;
        };
        // Every message length the protocol allows (1..=12 password bytes + 16 salt bytes),
        // a different message in each lane.
        for n in 17..=28usize {
            let messages: Vec<Vec<u8>> =
                (0..LANES).map(|lane| (0..n).map(|i| (i as u8).wrapping_mul(37).wrapping_add(11 + lane as u8)).collect()).collect();
            let words: [[u64; 4]; LANES] = std::array::from_fn(|lane| {
                let mut w = [0u64; 4];
                for (i, &b) in messages[lane].iter().enumerate() {
                    w[i / 8] |= u64::from(b) << (8 * (i % 8));
                }
                w
            });
            let got = avx512::first_words(simd, words, n as u64);
            for lane in 0..LANES {
                let expected = blake2b_simd::blake2b(&messages[lane]);
                let expected0 = u64::from_le_bytes(expected.as_bytes()[..8].try_into().unwrap_or([0; 8]));
                assert_eq!(got[lane], expected0, "length {n}, lane {lane}");
            }
        }
    }

    #[test]
    fn without_avx512_auto_falls_back_to_the_portable_kernel() {
        assert_eq!(Kernel::Auto.resolve_for(false), Ok(Kernel::Portable));
        assert_eq!(Kernel::Auto.resolve_for(true), Ok(Kernel::Avx512));
        assert!(Kernel::Avx512.resolve_for(false).is_err_and(|e| e.contains("portable")));
        assert_eq!(Kernel::Portable.resolve_for(true), Ok(Kernel::Portable));
        // On this CPU, whatever `Auto` resolves to finds the password (the portable kernel
        // is exercised on every CPU by `both_kernels_find_planted_passwords`).
        let resolved = Kernel::Auto.resolve().unwrap_or(Kernel::Portable);
        assert_eq!(resolved == Kernel::Avx512, avx512_available());
    }

    #[test]
    fn password_numbering_round_trips() {
        let layout = layout_for("dcba", "abcdefghij", "0123456789abcdef");
        assert_eq!(layout.password(0), "aaaa");
        assert_eq!(layout.password(1), "baaa");
        // d=3 at position 0, c=2 at 1, b=1 at 2, a=0 at 3.
        assert_eq!(layout.password(123), "dcba");
        assert_eq!(layout.password(9999), "jjjj");
        assert_eq!(layout.keyspace(), 10_000);
    }

    #[test]
    fn both_kernels_find_planted_passwords() {
        let mut kernels = vec![Kernel::Portable];
        if avx512_available() {
            kernels.push(Kernel::Avx512);
        }
        for kernel in kernels {
            // Long passwords end in chars[0] so that their index (and the search) stays small
            // while words 1 (d > 8) and the salt split across words are still exercised.
            let cases = [
                ("c", "abcdefghij"),
                ("j:", "ab:dxfghij"),
                ("0<>", "0123<>6789"),
                ("zzzzyx", "uvwxyzabcd"),
                ("1ab$$$$$$", "$a1b2c3d4e"),
                ("e4d$$$$$$$$$", "$a1b2c3d4e"),
            ];
            for (password, chars) in cases {
                let layout = layout_for(password, chars, "fedcba9876543210");
                let found = search(kernel, &layout, 0, layout.outer_count).map(|i| layout.password(i));
                assert_eq!(found.as_deref(), Some(password), "{kernel:?} {password}");
            }
            // A range that does not contain the password finds nothing.
            let layout = layout_for("aaaaj", "abcdefghij", "fedcba9876543210");
            let index = (0..layout.keyspace()).find(|&i| layout.password(i) == "aaaaj").unwrap_or(0);
            let outer = index / layout.low_count;
            assert_eq!(search(kernel, &layout, outer + 1, 5), None, "{kernel:?}");
            assert_eq!(search(kernel, &layout, outer, 1), Some(index), "{kernel:?}");
        }
    }
}
