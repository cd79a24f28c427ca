//! Steps 5-13 of the epoch fused into a few passes over flat rows.
//!
//! The chain composes one primitive per step, each a pass (or two) over a whole matrix, with
//! a fresh matrix per step. When no trace is asked for and every stored weights and bonds row
//! is sorted by column (what the chain stores), the same values come out of fewer passes:
//!
//! 1. bonds: one pass checks their order and (classic) takes their column sums;
//! 2. weights: masks, conversion and row normalisation in one pass;
//! 3. consensus: the chain's dense median table, built one cache-sized block of columns at a
//!    time, and the weighted median of each column (same pivots as the chain);
//! 4. clipping: validator trust, ranks and the weights for bonds (classic: already times the
//!    validator's active stake, which is the bond delta) in one pass, written over the
//!    weights;
//! 5. EMA: one walk of each weights-for-bonds row with its stored bonds row, normalising
//!    both on the fly (classic), written over the same storage, with the EMA's column sums
//!    and maxima;
//! 6. one last pass gives the dividends and the rows to store.
//!
//! Every value is computed by the same arithmetic, on the same operands and in the same
//! order as the chain's primitives (`crate::math`), so the outputs are identical bit for bit;
//! the few algebraic facts used are spelled out where they are used. Rows are flat arrays
//! (columns and values apart, values as raw `I32F32` bits) so each pass streams through
//! memory once, and the large matrices share one allocation.
//! `tests/reference.rs` compares whole epochs against the step-by-step composition.

use substrate_fixed::types::I32F32;

use super::{
    EpochInput, EpochParams, MatrixSteps, Prepared, liquid_alpha_params, uses_liquid_alpha,
};
use crate::math::{self, AlphaCurve, Divisor, MedianVoters, raw};

/// Whether a stored row is strictly sorted by column, which the fused form needs: unsorted
/// rows make the chain's merges order-dependent, so they take the step-by-step form.
fn sorted(row: &[(u16, u16)]) -> bool {
    // A fold without early exit, which the compiler vectorises.
    let next = row.get(1..).unwrap_or_default();
    row.iter()
        .zip(next)
        .fold(true, |sorted, (a, b)| sorted & (a.0 < b.0))
}

/// A sparse matrix stored flat: row `i` holds the columns `cols[start[i]..start[i + 1]]`
/// and the values (raw `I32F32` bits) in the same range of `vals`.
struct FlatRows {
    start: Vec<usize>,
    cols: Vec<u16>,
    vals: Vec<i64>,
}

impl FlatRows {
    fn with_capacity(rows: usize, entries: usize) -> Self {
        let mut start = Vec::with_capacity(rows + 1);
        start.push(0);
        Self {
            start,
            cols: Vec::with_capacity(entries),
            vals: Vec::with_capacity(entries),
        }
    }

    fn rows(&self) -> usize {
        self.start.len() - 1
    }

    #[inline]
    fn push(&mut self, j: u16, v: i64) {
        self.cols.push(j);
        self.vals.push(v);
    }

    fn end_row(&mut self) {
        self.start.push(self.cols.len());
    }

    fn row(&self, i: usize) -> (&[u16], &[i64]) {
        let range = self.start[i]..self.start[i + 1];
        (&self.cols[range.clone()], &self.vals[range])
    }
}

fn to_raw(v: &[I32F32]) -> Vec<i64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn from_raw(v: Vec<i64>) -> Vec<I32F32> {
    v.into_iter().map(I32F32::from_bits).collect()
}

/// Steps 5-13 without a trace; see the module docs. `None` (before any output) when some
/// stored row is not sorted by column.
pub(super) fn matrix_steps(
    params: &EpochParams,
    input: &EpochInput<'_>,
    prepared: &Prepared<'_>,
) -> Option<MatrixSteps> {
    let &Prepared {
        n,
        active_stake,
        new_permit,
        kappa,
        bonds_penalty,
        scalar_alpha,
        ..
    } = prepared;

    // The stored bonds, checked first (and, for classic bonds, their column sums).
    let bonds = StoredBonds::new(input, n, params.yuma3)?;

    // 5-6. Weights and consensus.
    let voters = MedianVoters::new(active_stake, kappa);
    let weights = normalized_weights(params, input, prepared)?;
    let consensus = consensus(&weights, active_stake, &voters);

    // 7-10. Clipping, validator trust, ranks, weights for bonds (classic: the bond delta).
    let consensus_raw = to_raw(&consensus);
    let stake_raw = to_raw(active_stake);
    let ratio = bonds_penalty.to_bits();
    let (sums, for_bonds) = if params.yuma3 {
        if ratio == 0 {
            // The weights for bonds are the weights themselves.
            let sums = clip_sums(&weights, &consensus_raw, &stake_raw);
            let rows = weights;
            (
                sums,
                ForBonds {
                    rows,
                    col_sum: Vec::new(),
                },
            )
        } else {
            yuma3_weights_for_bonds(&weights, &consensus_raw, &stake_raw, ratio)
        }
    } else {
        classic_bond_delta(weights, &consensus_raw, &stake_raw, ratio)
    };
    let ranks = from_raw(sums.ranks);
    let mut incentive = ranks.clone();
    math::inplace_normalize(&mut incentive);
    let incentive_raw = to_raw(&incentive);

    // 11-13. Bonds, dividends, storage.
    let alpha = scalar_alpha.to_bits();
    let (dividends, new_bonds) = if params.yuma3 {
        let ema = if uses_liquid_alpha(params, &consensus) {
            let curve = AlphaCurve::new(liquid_alpha_params(params));
            liquid_alpha_ema(for_bonds.rows, &bonds, &consensus_raw, &curve)
        } else {
            scalar_ema(for_bonds.rows, &bonds, alpha)
        };
        yuma3_dividends_and_storage(&ema, &incentive_raw, active_stake, new_permit)
    } else {
        let ema = classic_ema(for_bonds.rows, &for_bonds.col_sum, &bonds, alpha);
        classic_dividends_and_storage(&ema, &incentive_raw, new_permit)
    };
    Some(MatrixSteps {
        consensus,
        validator_trust: from_raw(sums.validator_trust),
        ranks,
        incentive,
        dividends,
        new_bonds,
        trace: None,
    })
}

/// Step 5: the masked, row-normalised weights (`None` if a row is not sorted).
#[inline(never)] // one pass over a matrix: kept apart so profiles show each pass
fn normalized_weights(
    params: &EpochParams,
    input: &EpochInput<'_>,
    prepared: &Prepared<'_>,
) -> Option<FlatRows> {
    let n = prepared.n;
    let registered = input.block_at_registration;
    let newest_registration = registered.iter().copied().max().unwrap_or(0);
    let entries = input.weights.iter().map(Vec::len).sum();
    let mut weights = FlatRows::with_capacity(n as usize, entries);
    for (i, row) in input.weights.iter().enumerate() {
        if !sorted(row) {
            return None;
        }
        let start = weights.cols.len();
        if !prepared.forbids[i] {
            let updated = input.last_update[i];
            let commit = input.commit_blocks.map(|cb| cb[i]);
            // The row sum saturates as `inplace_row_normalize_sparse`'s: for non-negative
            // terms that is the exact sum capped at the maximum.
            let sum = if updated > newest_registration
                && commit.is_none_or(|cb| cb >= newest_registration)
            {
                // Updated (and committed) after every registration: the outdated and
                // commit-reveal masks keep every entry, and in a sorted row the range and
                // diagonal filters cut at most a tail and one entry.
                let in_range = &row[..row.partition_point(|&(j, _)| j < n)];
                let diagonal = in_range.binary_search_by_key(&(i as u16), |&(j, _)| j);
                let (head, tail) = match diagonal {
                    Ok(at) if params.owner_uid != Some(i as u16) => {
                        (&in_range[..at], &in_range[at + 1..])
                    }
                    _ => (in_range, &in_range[..0]),
                };
                let mut total = 0_u64;
                for part in [head, tail] {
                    weights.cols.extend(part.iter().map(|&(j, _)| j));
                    weights
                        .vals
                        .extend(part.iter().map(|&(_, w)| i64::from(w) << 32));
                    // At most 65535 weights of at most 65535: no overflow (wrapping only
                    // spares debug builds' checks).
                    total = part
                        .iter()
                        .fold(total, |t, &(_, w)| t.wrapping_add(u64::from(w)));
                }
                if total < 1 << 31 {
                    (total << 32) as i64
                } else {
                    i64::MAX
                }
            } else {
                // The filters of the step-by-step form, entry by entry.
                let mut sum = 0_i64;
                for &(j, w) in row {
                    if j < n
                        && (i != j as usize || params.owner_uid == Some(j))
                        && updated > registered[j as usize]
                        && commit.is_none_or(|cb| cb >= registered[j as usize])
                    {
                        let w = i64::from(w) << 32;
                        sum = sum.saturating_add(w);
                        weights.push(j, w);
                    }
                }
                sum
            };
            if sum > 0 {
                let d = Divisor::new(I32F32::from_bits(sum));
                for v in &mut weights.vals[start..] {
                    *v = d.safe_div_raw(*v);
                }
            }
        }
        weights.end_row();
    }
    Some(weights)
}

/// Table entries per block of [`consensus`]: 128 KiB, well inside a core's L2 cache.
const BLOCK_ENTRIES: usize = 1 << 14;

/// Step 6: the weighted median of each column over the voters (positive active stake).
/// The chain reads the columns from a dense column-major `n × voters` table (`use_score`:
/// each voter's weights row, zeros elsewhere). The same table is built here one block of
/// columns at a time, small enough to stay in cache (row by row, consecutive writes
/// would be a whole column apart), and each block's medians are taken before the next.
#[inline(never)] // one pass over a matrix: kept apart so profiles show each pass
fn consensus(weights: &FlatRows, active_stake: &[I32F32], voters: &MedianVoters) -> Vec<I32F32> {
    let columns = weights.rows();
    let k = voters.len();
    if k == 0 {
        return vec![I32F32::from_bits(0); columns];
    }
    let voter_rows: Vec<usize> = (0..columns)
        .filter(|&i| active_stake[i] > I32F32::from_bits(0))
        .collect();
    let mut cursor: Vec<usize> = voter_rows.iter().map(|&i| weights.start[i]).collect();
    let block = (BLOCK_ENTRIES / k).max(8);
    let mut table = vec![0_i64; block.min(columns) * k];
    let mut buffer = Vec::new();
    let mut medians = Vec::with_capacity(columns);
    for block_start in (0..columns).step_by(block) {
        let block_end = (block_start + block).min(columns);
        let table = &mut table[..(block_end - block_start) * k];
        table.fill(0);
        for (voter, &i) in voter_rows.iter().enumerate() {
            let end = weights.start[i + 1];
            let mut x = cursor[voter];
            while x < end && (weights.cols[x] as usize) < block_end {
                table[(weights.cols[x] as usize - block_start) * k + voter] = weights.vals[x];
                x += 1;
            }
            cursor[voter] = x;
        }
        medians.extend(
            table
                .chunks_exact(k)
                .map(|col| voters.median(col, &mut buffer)),
        );
    }
    medians
}

/// Validator trust and ranks (raw bits).
struct ClipSums {
    validator_trust: Vec<i64>,
    ranks: Vec<i64>,
}

/// Weights for bonds (classic: the bond delta) with their column sums where needed.
struct ForBonds {
    rows: FlatRows,
    /// Classic: column sums of the bond delta, as `inplace_col_normalize_sparse` takes them.
    col_sum: Vec<i64>,
}

/// `col_clip_sparse` for one entry, with a dropped entry (above a threshold of 0) as 0: for
/// the sums below, and for the classic bond delta, a zero entry and an absent one give the
/// same results.
#[inline]
fn clip_or_zero(v: i64, threshold: i64) -> i64 {
    if threshold < v { threshold.max(0) } else { v }
}

/// Steps 7-9 in one pass: `col_clip_sparse`, `row_sum_sparse` and `matmul_sparse` (an entry
/// the clip drops adds nothing, exactly as an absent one).
#[inline(never)] // one pass over a matrix: kept apart so profiles show each pass
fn clip_sums(weights: &FlatRows, consensus: &[i64], active_stake: &[i64]) -> ClipSums {
    let mut validator_trust = Vec::with_capacity(active_stake.len());
    let mut ranks = vec![0_i64; consensus.len()];
    for (i, &scale) in active_stake.iter().enumerate() {
        let (cols, vals) = weights.row(i);
        let mut trust = 0_i64;
        for (&j, &v) in cols.iter().zip(vals) {
            let c = clip_or_zero(v, consensus[j as usize]);
            trust = trust.saturating_add(c);
            let r = &mut ranks[j as usize];
            *r = r.saturating_add(raw::mul(scale, c));
        }
        validator_trust.push(trust);
    }
    ClipSums {
        validator_trust,
        ranks,
    }
}

/// Classic steps 7-10 in one pass, written over the weights: the sums of [`clip_sums`] and
/// the bond delta `row_hadamard_sparse(interpolate_sparse(W, W̄, ratio), A)` with its column
/// sums. The delta keeps the weights' entries, those the clip or the interpolation drops as
/// 0: the delta is only column-normalised and merged into the EMA, where a zero entry and an
/// absent one give the same values. At bonds penalty 1 the delta is `W̄_ij · A_i`, the very
/// products the ranks sum in the same order, so its column sums are the ranks.
#[inline(never)] // one pass over a matrix: kept apart so profiles show each pass
fn classic_bond_delta(
    mut weights: FlatRows,
    consensus: &[i64],
    active_stake: &[i64],
    ratio: i64,
) -> (ClipSums, ForBonds) {
    let mut validator_trust = Vec::with_capacity(active_stake.len());
    let mut ranks = vec![0_i64; consensus.len()];
    let mut col_sum = vec![
        0_i64;
        if ratio == raw::ONE {
            0
        } else {
            consensus.len()
        }
    ];
    for (i, &scale) in active_stake.iter().enumerate() {
        let range = weights.start[i]..weights.start[i + 1];
        let mut trust = 0_i64;
        for (&j, v) in weights.cols[range.clone()]
            .iter()
            .zip(&mut weights.vals[range])
        {
            let ju = j as usize;
            let c = clip_or_zero(*v, consensus[ju]);
            trust = trust.saturating_add(c);
            let product = raw::mul(scale, c);
            ranks[ju] = ranks[ju].saturating_add(product);
            *v = match ratio {
                raw::ONE => product,
                0 => raw::mul(*v, scale),
                _ => {
                    // `interpolate_sparse` keeps only positive values.
                    let x = v.saturating_add(raw::mul(ratio, c.saturating_sub(*v)));
                    raw::mul(x.max(0), scale)
                }
            };
            if ratio != raw::ONE {
                col_sum[ju] = col_sum[ju].saturating_add(*v);
            }
        }
        validator_trust.push(trust);
    }
    if ratio == raw::ONE {
        col_sum.clone_from(&ranks);
    }
    (
        ClipSums {
            validator_trust,
            ranks,
        },
        ForBonds {
            rows: weights,
            col_sum,
        },
    )
}

/// Yuma3 steps 7-10 at a bonds penalty other than 0: the sums of [`clip_sums`] and the
/// weights for bonds `interpolate_sparse(W, W̄, ratio)` with its exact entries (the
/// liquid-alpha EMA keeps a bond wherever the weights for bonds have an entry, even 0).
#[inline(never)] // one pass over a matrix: kept apart so profiles show each pass
fn yuma3_weights_for_bonds(
    weights: &FlatRows,
    consensus: &[i64],
    active_stake: &[i64],
    ratio: i64,
) -> (ClipSums, ForBonds) {
    let sums = clip_sums(weights, consensus, active_stake);
    let mut rows = FlatRows::with_capacity(weights.rows(), weights.cols.len());
    for i in 0..weights.rows() {
        let (cols, vals) = weights.row(i);
        for (&j, &v) in cols.iter().zip(vals) {
            let threshold = consensus[j as usize];
            let clipped = if threshold < v {
                (threshold > 0).then_some(threshold)
            } else {
                Some(v)
            };
            let for_bonds = if ratio == raw::ONE {
                clipped
            } else {
                let c = clipped.unwrap_or(0);
                let x = v.saturating_add(raw::mul(ratio, c.saturating_sub(v)));
                (x > 0).then_some(x)
            };
            if let Some(x) = for_bonds {
                rows.push(j, x);
            }
        }
        rows.end_row();
    }
    (
        sums,
        ForBonds {
            rows,
            col_sum: Vec::new(),
        },
    )
}

/// The stored bonds as the epoch reads them: entries to uids registered at or after the last
/// tempo dropped, converted to fixed point (Yuma3: as proportions of 65535). Entries to
/// columns `>= n` are dropped too: no later step reads them (column sums stop at `n`, and so
/// do the EMA merges, which only keep columns of rows below `n`).
struct StoredBonds<'a> {
    rows: &'a [Vec<(u16, u16)>],
    /// Per column below `n`: whether its bonds survive the registration mask.
    live: Vec<bool>,
    /// Every column below `n` is live.
    all_live: bool,
    /// Yuma3 reads bonds as proportions of 65535, classic as the stored integers.
    yuma3: bool,
    /// `fixed_to_fixed_u16_proportion`: a division by 65535.
    to_proportion: Divisor,
    /// Classic: column sums as `inplace_col_normalize_sparse` takes them (rows in order,
    /// saturating); empty for Yuma3.
    col_sums: Vec<i64>,
}

impl<'a> StoredBonds<'a> {
    /// The bonds of `input`, or `None` if a row is not sorted. One pass over them checks the
    /// order and (classic) takes the column sums.
    #[inline(never)] // one pass over a matrix: kept apart so profiles show each pass
    fn new(input: &EpochInput<'a>, n: u16, yuma3: bool) -> Option<Self> {
        let last_tempo = input.last_tempo_block;
        let live: Vec<bool> = input.block_at_registration[..n as usize]
            .iter()
            .map(|registered| last_tempo > *registered)
            .collect();
        let mut col_sums = vec![0_i64; if yuma3 { 0 } else { n as usize }];
        for row in input.bonds {
            if !sorted(row) {
                return None;
            }
            if !yuma3 {
                for &(j, b) in row {
                    if let Some(s) = col_sums.get_mut(j as usize)
                        && live[j as usize]
                    {
                        *s = s.saturating_add(Self::classic(b));
                    }
                }
            }
        }
        Some(Self {
            rows: input.bonds,
            all_live: live.iter().all(|l| *l),
            live,
            yuma3,
            to_proportion: Divisor::new(I32F32::from_num(u16::MAX)),
            col_sums,
        })
    }

    /// A stored bond as classic bonds read it: the integer as fixed point (raw bits).
    #[inline]
    fn classic(b: u16) -> i64 {
        i64::from(b) << 32
    }

    /// A stored bond as Yuma3 reads it: a proportion of 65535 (raw bits).
    #[inline]
    fn proportion(&self, b: u16) -> i64 {
        self.to_proportion.safe_div_raw(Self::classic(b))
    }

    /// A stored bond as the epoch reads it (raw bits).
    #[inline]
    fn value(&self, b: u16) -> i64 {
        if self.yuma3 {
            self.proportion(b)
        } else {
            Self::classic(b)
        }
    }

    /// Row `i` with the masks applied, as stored pairs: the row itself when every column is
    /// live (entries beyond `n` are never matched by a column below `n`), else a copy of
    /// the live entries in `scratch`.
    fn live_row<'s>(&'s self, i: usize, scratch: &'s mut Vec<(u16, u16)>) -> &'s [(u16, u16)] {
        if self.all_live {
            return &self.rows[i];
        }
        scratch.clear();
        scratch.extend(
            self.rows[i]
                .iter()
                .filter(|(j, _)| self.live.get(*j as usize) == Some(&true)),
        );
        scratch
    }

    /// Row `i` as the epoch reads it into `cols` / `vals` (cleared first).
    fn row(&self, i: usize, cols: &mut Vec<u16>, vals: &mut Vec<i64>) {
        cols.clear();
        vals.clear();
        for &(j, b) in &self.rows[i] {
            if self.live.get(j as usize) == Some(&true) {
                cols.push(j);
                vals.push(self.value(b));
            }
        }
    }
}

/// `inplace_col_normalize_sparse`'s division of one column, by its sum unless that is 0. A
/// zero sum becomes a division by 1, which returns every value unchanged.
fn column_divisor(sum: i64) -> Divisor {
    Divisor::new(I32F32::from_bits(if sum == 0 { raw::ONE } else { sum }))
}

/// Column statistics of an EMA matrix, as its column normalisation and max-upscale take them.
#[derive(Debug, Clone, Copy, Default)]
struct ColumnStat {
    sum: i64,
    /// Entries are positive, so starting at 0 as `inplace_col_max_upscale_sparse` does is
    /// the same as starting at the first entry.
    max: i64,
}

impl ColumnStat {
    #[inline]
    fn add(&mut self, v: i64) {
        self.sum = self.sum.saturating_add(v);
        self.max = self.max.max(v);
    }
}

/// The EMA bonds with their column statistics, written over the storage of the matrix they
/// are computed from: an EMA row whose entries are a subset of its source row's (every
/// liquid-alpha row, and every classic or scalar row whose bonds are all at columns of its
/// source row) is compacted in place; any other row (a merge with other bond columns) goes
/// to `tail`.
struct Ema {
    cols: Vec<u16>,
    vals: Vec<i64>,
    tail: FlatRows,
    /// Where row `i` is: `(in tail, start, end)`.
    rows: Vec<(bool, usize, usize)>,
    columns: Vec<ColumnStat>,
}

impl Ema {
    fn row(&self, i: usize) -> (&[u16], &[i64]) {
        let (in_tail, start, end) = self.rows[i];
        let (cols, vals) = if in_tail {
            (&self.tail.cols, &self.tail.vals)
        } else {
            (&self.cols, &self.vals)
        };
        (&cols[start..end], &vals[start..end])
    }
}

/// Build an [`Ema`] over `source`, row by row, from the stored bonds. When the EMA row only
/// has columns of the source row (always for liquid alpha, whose EMA keeps only weight
/// columns; for a merge, when every live bond is at a source column), `ema(j, value, bond
/// at j)` gives each entry, written over the source row (a value of 0 or less is not kept).
/// Otherwise `merge(i, row, out_cols, out_vals)` appends the row's EMA (positive values only)
/// to the tail.
fn build_ema(
    source: FlatRows,
    columns: usize,
    bonds: &StoredBonds<'_>,
    merges: bool,
    ema: impl Fn(u16, i64, Option<u16>) -> i64,
    mut merge: impl FnMut(usize, (&[u16], &[i64]), &mut Vec<u16>, &mut Vec<i64>),
) -> Ema {
    let FlatRows {
        start,
        mut cols,
        mut vals,
    } = source;
    let rows = start.len() - 1;
    let mut stats = vec![ColumnStat::default(); columns];
    let mut ranges = Vec::with_capacity(rows);
    let mut tail = FlatRows::with_capacity(0, 0);
    let mut scratch = Vec::new();
    for i in 0..rows {
        let (s, e) = (start[i], start[i + 1]);
        let live = bonds.live_row(i, &mut scratch);
        let placement = placement(live, &cols[s..e]);
        if !merges || placement != BondPlacement::Elsewhere {
            let kept = ema_row_in_place(
                &mut cols[s..e],
                &mut vals[s..e],
                live,
                placement == BondPlacement::Same,
                &mut stats,
                &ema,
            );
            ranges.push((false, s, s + kept));
        } else {
            let at = tail.cols.len();
            merge(
                i,
                (&cols[s..e], &vals[s..e]),
                &mut tail.cols,
                &mut tail.vals,
            );
            for (&j, &v) in tail.cols[at..].iter().zip(&tail.vals[at..]) {
                stats[j as usize].add(v);
            }
            ranges.push((true, at, tail.cols.len()));
        }
    }
    Ema {
        cols,
        vals,
        tail,
        rows: ranges,
        columns: stats,
    }
}

/// Where a row's bonds are relative to the columns of its source row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BondPlacement {
    /// At exactly the source columns.
    Same,
    /// At some of the source columns only.
    Within,
    /// At least one bond at another column.
    Elsewhere,
}

/// Compare the bond columns with `cols` (both sorted) in one walk.
fn placement(bonds: &[(u16, u16)], cols: &[u16]) -> BondPlacement {
    if bonds.len() == cols.len() {
        if bonds.iter().zip(cols).all(|(b, j)| b.0 == *j) {
            return BondPlacement::Same;
        }
        return BondPlacement::Elsewhere;
    }
    if bonds.len() > cols.len() {
        return BondPlacement::Elsewhere;
    }
    let mut x = 0;
    for &(j, _) in bonds {
        while x < cols.len() && cols[x] < j {
            x += 1;
        }
        if x == cols.len() || cols[x] != j {
            return BondPlacement::Elsewhere;
        }
    }
    BondPlacement::Within
}

/// One row of [`build_ema`] in place: walk the source entries in order with a cursor on the
/// sorted bonds (skipping bonds at other columns), and keep the positive EMA values, in
/// order, at the front of the row (each written at or before the entry just read). Returns
/// how many were kept. Bonds at exactly the source columns (`same`) pair up without the
/// cursor.
#[inline(always)]
fn ema_row_in_place(
    cols: &mut [u16],
    vals: &mut [i64],
    bonds: &[(u16, u16)],
    same: bool,
    stats: &mut [ColumnStat],
    ema: impl Fn(u16, i64, Option<u16>) -> i64,
) -> usize {
    let mut kept = 0;
    let mut keep = |cols: &mut [u16], vals: &mut [i64], j: u16, v: i64| {
        if v > 0 {
            stats[j as usize].add(v);
            cols[kept] = j;
            vals[kept] = v;
            kept += 1;
        }
    };
    if same {
        for x in 0..cols.len() {
            let j = cols[x];
            let v = ema(j, vals[x], Some(bonds[x].1));
            keep(cols, vals, j, v);
        }
    } else {
        let mut y = 0;
        for x in 0..cols.len() {
            let j = cols[x];
            while y < bonds.len() && bonds[y].0 < j {
                y += 1;
            }
            let bond = (y < bonds.len() && bonds[y].0 == j).then(|| bonds[y].1);
            let v = ema(j, vals[x], bond);
            keep(cols, vals, j, v);
        }
    }
    kept
}

/// `mat_ema_sparse` for one pair of strictly sorted rows (union in column order, keeping
/// values > 0), with each operand first passed through `scale_new` / `scale_old`. The sum
/// starts from the first product itself, as `0 + p = p` exactly.
#[inline]
fn ema_rows(
    (new_cols, new_vals): (&[u16], &[i64]),
    (old_cols, old_vals): (&[u16], &[i64]),
    alpha: i64,
    scale_new: impl Fn(u16, i64) -> i64,
    scale_old: impl Fn(u16, i64) -> i64,
    out_cols: &mut Vec<u16>,
    out_vals: &mut Vec<i64>,
) {
    let one_minus_alpha = raw::ONE.saturating_sub(alpha);
    let from_new = |j, v| raw::mul(alpha, scale_new(j, v));
    let from_old = |j, v| raw::mul(one_minus_alpha, scale_old(j, v));
    let mut keep = |j: u16, v: i64| {
        if v > 0 {
            out_cols.push(j);
            out_vals.push(v);
        }
    };
    let (mut x, mut y) = (0, 0);
    while x < new_cols.len() && y < old_cols.len() {
        let (jn, jo) = (new_cols[x], old_cols[y]);
        if jn == jo {
            keep(
                jn,
                from_new(jn, new_vals[x]).saturating_add(from_old(jo, old_vals[y])),
            );
            x += 1;
            y += 1;
        } else if jn < jo {
            keep(jn, from_new(jn, new_vals[x]));
            x += 1;
        } else {
            keep(jo, from_old(jo, old_vals[y]));
            y += 1;
        }
    }
    for (&j, &v) in new_cols[x..].iter().zip(&new_vals[x..]) {
        keep(j, from_new(j, v));
    }
    for (&j, &v) in old_cols[y..].iter().zip(&old_vals[y..]) {
        keep(j, from_old(j, v));
    }
}

/// The two column normalisations the classic EMA reads.
struct DeltaAndBondScale {
    delta: Divisor,
    bond: Divisor,
}

/// Classic step 11 up to the EMA: `mat_ema_sparse(col_normalize(ΔB), col_normalize(B), α)`,
/// normalising both operands entry by entry from their column sums.
#[inline(never)] // one pass over a matrix: kept apart so profiles show each pass
fn classic_ema(delta: FlatRows, delta_col_sum: &[i64], bonds: &StoredBonds<'_>, alpha: i64) -> Ema {
    debug_assert!(!bonds.yuma3, "classic bonds");
    let scales: Vec<DeltaAndBondScale> = delta_col_sum
        .iter()
        .zip(&bonds.col_sums)
        .map(|(&d, &b)| DeltaAndBondScale {
            delta: column_divisor(d),
            bond: column_divisor(b),
        })
        .collect();
    let one_minus_alpha = raw::ONE.saturating_sub(alpha);
    let (mut b_cols, mut b_vals) = (Vec::new(), Vec::new());
    build_ema(
        delta,
        delta_col_sum.len(),
        bonds,
        true,
        |j, d, bond| {
            let scale = &scales[j as usize];
            let from_delta = raw::mul(alpha, scale.delta.safe_div_raw(d));
            match bond {
                Some(b) => {
                    let b = scale.bond.safe_div_raw(StoredBonds::classic(b));
                    from_delta.saturating_add(raw::mul(one_minus_alpha, b))
                }
                None => from_delta,
            }
        },
        |i, row, out_cols, out_vals| {
            bonds.row(i, &mut b_cols, &mut b_vals);
            ema_rows(
                row,
                (&b_cols, &b_vals),
                alpha,
                |j, v| scales[j as usize].delta.safe_div_raw(v),
                |j, v| scales[j as usize].bond.safe_div_raw(v),
                out_cols,
                out_vals,
            );
        },
    )
}

/// The normalisation and max-upscale of one column of the classic EMA.
struct NormalizeAndUpscale {
    normalize: Divisor,
    upscale: Divisor,
}

/// Classic steps 11-13 after the EMA: column-normalise it, dividends
/// `matmul_transpose_sparse(EMA, I)` normalised, and storage of the column max-upscaled EMA.
///
/// The column maxima of the normalised EMA come from those of the EMA: every entry is
/// positive and at most its column sum, so normalising is `floor(e · 2^32 / sum)` without
/// overflow, which never decreases as `e` grows, hence `max(normalise(e)) = normalise(max e)`.
#[inline(never)] // one pass over a matrix: kept apart so profiles show each pass
fn classic_dividends_and_storage(
    ema: &Ema,
    incentive: &[i64],
    permits: &[bool],
) -> (Vec<I32F32>, Vec<Vec<(u16, u16)>>) {
    let scales: Vec<NormalizeAndUpscale> = ema
        .columns
        .iter()
        .map(|stat| {
            let normalize = column_divisor(stat.sum);
            NormalizeAndUpscale {
                upscale: column_divisor(normalize.safe_div_raw(stat.max)),
                normalize,
            }
        })
        .collect();
    let mut dividends = Vec::with_capacity(permits.len());
    let mut stored = Vec::with_capacity(permits.len());
    for (i, &permitted) in permits.iter().enumerate() {
        let (cols, vals) = ema.row(i);
        let mut d = 0_i64;
        let mut row = Vec::new();
        if permitted {
            row = vec![(0, 0); cols.len()];
            for ((slot, &j), &e) in row.iter_mut().zip(cols).zip(vals) {
                let scale = &scales[j as usize];
                let normalized = scale.normalize.safe_div_raw(e);
                d = d.saturating_add(raw::mul(incentive[j as usize], normalized));
                *slot = (
                    j,
                    raw::proportion_to_u16(scale.upscale.safe_div_raw(normalized)),
                );
            }
        } else {
            for (&j, &e) in cols.iter().zip(vals) {
                let normalized = scales[j as usize].normalize.safe_div_raw(e);
                d = d.saturating_add(raw::mul(incentive[j as usize], normalized));
            }
        }
        dividends.push(I32F32::from_bits(d));
        stored.push(row);
    }
    math::inplace_normalize(&mut dividends);
    (dividends, stored)
}

/// Yuma3 with liquid alpha: `liquid_alpha_ema_sparse` for sorted rows. Only the alphas of
/// the weights' own columns are read there (bonds without a weight vanish), so only those
/// are computed, and every EMA row is a subset of its weights row: all rows are in place.
#[inline(never)] // one pass over a matrix: kept apart so profiles show each pass
fn liquid_alpha_ema(
    weights_for_bonds: FlatRows,
    bonds: &StoredBonds<'_>,
    consensus: &[i64],
    curve: &AlphaCurve,
) -> Ema {
    build_ema(
        weights_for_bonds,
        consensus.len(),
        bonds,
        false,
        // `ema_alpha_row`: (1 - a)·b for a bond present, plus max(0, a·w), at most 1.
        |j, w, bond| {
            let bond = bond.map(|b| bonds.proportion(b));
            let alpha = curve.alpha(consensus[j as usize], w, bond.unwrap_or(0));
            let decayed = bond.map_or(0, |b| raw::mul(raw::ONE.saturating_sub(alpha), b));
            let increment = raw::mul(alpha, w).max(0);
            decayed.saturating_add(increment).min(raw::ONE)
        },
        |_, _, _, _| {},
    )
}

/// Yuma3 without liquid alpha: `mat_ema_sparse(WB, B, α)`.
#[inline(never)] // one pass over a matrix: kept apart so profiles show each pass
fn scalar_ema(weights_for_bonds: FlatRows, bonds: &StoredBonds<'_>, alpha: i64) -> Ema {
    let one_minus_alpha = raw::ONE.saturating_sub(alpha);
    let (mut b_cols, mut b_vals) = (Vec::new(), Vec::new());
    build_ema(
        weights_for_bonds,
        bonds.live.len(),
        bonds,
        true,
        |_, w, bond| {
            let from_weight = raw::mul(alpha, w);
            match bond {
                Some(b) => {
                    from_weight.saturating_add(raw::mul(one_minus_alpha, bonds.proportion(b)))
                }
                None => from_weight,
            }
        },
        |i, row, out_cols, out_vals| {
            bonds.row(i, &mut b_cols, &mut b_vals);
            ema_rows(
                row,
                (&b_cols, &b_vals),
                alpha,
                |_, v| v,
                |_, v| v,
                out_cols,
                out_vals,
            );
        },
    )
}

/// Yuma3 steps 12-13 after the EMA: storage of the EMA itself, and dividends
/// `vec_mul(row_sum(mat_vec_mul(col_normalize(EMA), I)), A)` normalised (the zero products
/// `mat_vec_mul_sparse` drops add nothing to the row sums).
#[inline(never)] // one pass over a matrix: kept apart so profiles show each pass
fn yuma3_dividends_and_storage(
    ema: &Ema,
    incentive: &[i64],
    active_stake: &[I32F32],
    permits: &[bool],
) -> (Vec<I32F32>, Vec<Vec<(u16, u16)>>) {
    let scales: Vec<Divisor> = ema.columns.iter().map(|c| column_divisor(c.sum)).collect();
    let mut per_validator = Vec::with_capacity(permits.len());
    let mut stored = Vec::with_capacity(permits.len());
    for (i, &permitted) in permits.iter().enumerate() {
        let (cols, vals) = ema.row(i);
        let mut total = 0_i64;
        for (&j, &e) in cols.iter().zip(vals) {
            let normalized = scales[j as usize].safe_div_raw(e);
            total = total.saturating_add(raw::mul(normalized, incentive[j as usize]));
        }
        per_validator.push(I32F32::from_bits(total));
        stored.push(if permitted {
            cols.iter()
                .zip(vals)
                .map(|(&j, &e)| (j, raw::proportion_to_u16(e)))
                .collect()
        } else {
            Vec::new()
        });
    }
    let mut dividends = math::vec_mul(&per_validator, active_stake);
    math::inplace_normalize(&mut dividends);
    (dividends, stored)
}
