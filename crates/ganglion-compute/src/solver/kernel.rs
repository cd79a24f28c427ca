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
//! - [`Kernel::Avx512`]: BLAKE2b's compression written for 8 lanes (one candidate each) over
//!   plain `[u64; 8]` arrays, specialised for this job: a message of at most 28 bytes is one
//!   block whose words 4–15 are zero, so those additions vanish, and only the first output
//!   word is computed (a match is then confirmed with the full digest). Compiled inside
//!   `pulp`'s AVX-512 context, LLVM turns every lane loop into one AVX-512 instruction
//!   (including the 64-bit rotations). Runtime detection and the `target_feature` call are
//!   pulp's, so this crate stays free of `unsafe`.
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
        match self {
            Kernel::Auto => Ok(if avx512_available() { Kernel::Avx512 } else { Kernel::Portable }),
            Kernel::Portable => Ok(Kernel::Portable),
            Kernel::Avx512 if avx512_available() => Ok(Kernel::Avx512),
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
            Some(simd) => pulp::Simd::vectorize(simd, Lanes8 { layout, start: outer_start, end }),
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

const LANES: usize = 8;
type V = [u64; LANES];
const ZERO: V = [0; LANES];

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

#[inline(always)]
fn add3(a: V, b: V, c: V) -> V {
    let mut out = ZERO;
    for i in 0..LANES {
        out[i] = a[i].wrapping_add(b[i]).wrapping_add(c[i]);
    }
    out
}

#[inline(always)]
fn add(a: V, b: V) -> V {
    let mut out = ZERO;
    for i in 0..LANES {
        out[i] = a[i].wrapping_add(b[i]);
    }
    out
}

#[inline(always)]
fn xor_rotate(a: V, b: V, n: u32) -> V {
    let mut out = ZERO;
    for i in 0..LANES {
        out[i] = (a[i] ^ b[i]).rotate_right(n);
    }
    out
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn g(v: &mut [V; 16], a: usize, b: usize, c: usize, d: usize, x: V, y: V) {
    v[a] = add3(v[a], v[b], x);
    v[d] = xor_rotate(v[d], v[a], 32);
    v[c] = add(v[c], v[d]);
    v[b] = xor_rotate(v[b], v[c], 24);
    v[a] = add3(v[a], v[b], y);
    v[d] = xor_rotate(v[d], v[a], 16);
    v[c] = add(v[c], v[d]);
    v[b] = xor_rotate(v[b], v[c], 63);
}

macro_rules! round {
    ($v:ident, $m:ident, [$s0:literal, $s1:literal, $s2:literal, $s3:literal, $s4:literal, $s5:literal, $s6:literal, $s7:literal,
        $s8:literal, $s9:literal, $s10:literal, $s11:literal, $s12:literal, $s13:literal, $s14:literal, $s15:literal]) => {
        g(&mut $v, 0, 4, 8, 12, $m[$s0], $m[$s1]);
        g(&mut $v, 1, 5, 9, 13, $m[$s2], $m[$s3]);
        g(&mut $v, 2, 6, 10, 14, $m[$s4], $m[$s5]);
        g(&mut $v, 3, 7, 11, 15, $m[$s6], $m[$s7]);
        g(&mut $v, 0, 5, 10, 15, $m[$s8], $m[$s9]);
        g(&mut $v, 1, 6, 11, 12, $m[$s10], $m[$s11]);
        g(&mut $v, 2, 7, 8, 13, $m[$s12], $m[$s13]);
        g(&mut $v, 3, 4, 9, 14, $m[$s14], $m[$s15]);
    };
}

/// Word 0 of BLAKE2b-512 of single-block messages of `len` bytes whose words 0–3 are
/// `m0..m3` per lane and words 4–15 are zero.
#[inline(always)]
fn first_word(m0: V, m1: V, m2: V, m3: V, len: u64) -> V {
    // Constant message words are literal zeros so that their additions fold away.
    let m: [V; 16] = [m0, m1, m2, m3, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO];
    let mut v: [V; 16] = [
        [H0; LANES],
        [IV[1]; LANES],
        [IV[2]; LANES],
        [IV[3]; LANES],
        [IV[4]; LANES],
        [IV[5]; LANES],
        [IV[6]; LANES],
        [IV[7]; LANES],
        [IV[0]; LANES],
        [IV[1]; LANES],
        [IV[2]; LANES],
        [IV[3]; LANES],
        [IV[4] ^ len; LANES],
        [IV[5]; LANES],
        [!IV[6]; LANES],
        [IV[7]; LANES],
    ];
    round!(v, m, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    round!(v, m, [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3]);
    round!(v, m, [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4]);
    round!(v, m, [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8]);
    round!(v, m, [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13]);
    round!(v, m, [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9]);
    round!(v, m, [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11]);
    round!(v, m, [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10]);
    round!(v, m, [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5]);
    round!(v, m, [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0]);
    round!(v, m, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    round!(v, m, [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3]);
    let mut out = ZERO;
    for i in 0..LANES {
        out[i] = H0 ^ v[0][i] ^ v[8][i];
    }
    out
}

/// The 8-lane search, run inside pulp's SIMD context.
struct Lanes8<'a> {
    layout: &'a Layout,
    start: u64,
    end: u64,
}

impl pulp::WithSimd for Lanes8<'_> {
    type Output = Option<u64>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Option<u64> {
        let layout = self.layout;
        let len = layout.message_len() as u64;
        let m2 = [layout.salt_words[2]; LANES];
        let m3 = [layout.salt_words[3]; LANES];
        let target = [layout.target0; LANES];
        for outer in self.start..self.end {
            let (w0, w1) = layout.outer_words(outer);
            let m1 = [w1; LANES];
            let mut low = 0u64;
            while low < layout.low_count {
                let mut m0 = ZERO;
                for (lane, word) in m0.iter_mut().enumerate() {
                    let index = (low + lane as u64) % layout.low_count;
                    *word = w0 | layout.low_words[index as usize];
                }
                let h0 = first_word(m0, m1, m2, m3, len);
                let mut hit = false;
                for i in 0..LANES {
                    hit |= h0[i] == target[i];
                }
                if hit {
                    for (lane, &word) in h0.iter().enumerate() {
                        let candidate = outer * layout.low_count + (low + lane as u64) % layout.low_count;
                        if word == layout.target0 && layout.confirm(candidate) {
                            return Some(candidate);
                        }
                    }
                }
                low += LANES as u64;
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
    fn first_word_matches_blake2b_for_every_length() {
        // Every message length the protocol allows (1..=12 password bytes + 16 salt bytes).
        for n in 17..=28usize {
            let message: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(37).wrapping_add(11)).collect();
            let mut words = [0u64; 4];
            for (i, &b) in message.iter().enumerate() {
                words[i / 8] |= u64::from(b) << (8 * (i % 8));
            }
            let h = first_word([words[0]; LANES], [words[1]; LANES], [words[2]; LANES], [words[3]; LANES], n as u64);
            let expected = blake2b_simd::blake2b(&message);
            let expected0 = u64::from_le_bytes(expected.as_bytes()[..8].try_into().unwrap_or([0; 8]));
            assert!(h.iter().all(|&w| w == expected0), "length {n}");
        }
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
