//! Reads of whole records, for the validators (the compute scoring window) and the hub.

use sqlx::any::AnyRow;

use crate::error::{RecordsError, RecordsResult};
use crate::store::{Cols, Records};
use crate::types::{AllocationRecord, ChallengeRecord, InferenceRecord, NeuronSnapshot, ScoreRecord, SpecsRecord};
use crate::write::{Arg, bind_all};

/// The most rows any list query returns, whatever limit is asked for.
pub const MAX_LIMIT: u32 = 1000;

/// The most rounds [`Records::recent_challenge_rounds`] returns.
pub const MAX_ROUNDS: u32 = 1000;

pub(crate) fn check_limit(limit: u32) -> RecordsResult<i64> {
    if limit == 0 || limit > MAX_LIMIT {
        return Err(RecordsError::InvalidInput { field: "limit", reason: format!("must be 1 to {MAX_LIMIT}, got {limit}") });
    }
    Ok(i64::from(limit))
}

pub(crate) const INFERENCE_SELECT: &str = "SELECT seq, id, created_at_ms, netuid, block, validator_hotkey, miner_uid, \
    miner_hotkey, miner_coldkey, model, endpoint, organic, sampling, seed, prompt, response, ttft_ms, total_ms, tokens, tps, \
    verified, cause, similarity, detail FROM inference";

pub(crate) fn inference_from_row(row: &AnyRow) -> RecordsResult<InferenceRecord> {
    let c = Cols { row, table: "inference" };
    Ok(InferenceRecord {
        id: c.text("id")?,
        created_at_ms: c.i64("created_at_ms")?,
        netuid: c.u16("netuid")?,
        block: c.u64("block")?,
        validator_hotkey: c.text("validator_hotkey")?,
        miner_uid: c.u16("miner_uid")?,
        miner_hotkey: c.text("miner_hotkey")?,
        miner_coldkey: c.text("miner_coldkey")?,
        model: c.text("model")?,
        endpoint: c.text("endpoint")?,
        organic: c.bool("organic")?,
        sampling: c.json("sampling")?,
        seed: c.opt_u64_text("seed")?,
        prompt: c.json("prompt")?,
        response: c.text("response")?,
        ttft_ms: c.opt_f64("ttft_ms")?,
        total_ms: c.f64("total_ms")?,
        tokens: c.u32("tokens")?,
        tps: c.f64("tps")?,
        verified: c.bool("verified")?,
        cause: c.opt_text("cause")?,
        similarity: c.opt_f64("similarity")?,
        detail: c.json("detail")?,
    })
}

pub(crate) const CHALLENGE_SELECT: &str = "SELECT seq, id, created_at_ms, netuid, validator_hotkey, miner_uid, miner_hotkey, \
    success, elapsed_ms, difficulty, cause FROM challenge";

pub(crate) fn challenge_from_row(row: &AnyRow) -> RecordsResult<ChallengeRecord> {
    let c = Cols { row, table: "challenge" };
    Ok(ChallengeRecord {
        id: c.text("id")?,
        created_at_ms: c.i64("created_at_ms")?,
        netuid: c.u16("netuid")?,
        validator_hotkey: c.text("validator_hotkey")?,
        miner_uid: c.u16("miner_uid")?,
        miner_hotkey: c.text("miner_hotkey")?,
        success: c.bool("success")?,
        elapsed_ms: c.f64("elapsed_ms")?,
        difficulty: c.u8("difficulty")?,
        cause: c.opt_text("cause")?,
    })
}

fn specs_from_row(row: &AnyRow) -> RecordsResult<SpecsRecord> {
    let c = Cols { row, table: "specs" };
    Ok(SpecsRecord {
        netuid: c.u16("netuid")?,
        miner_uid: c.u16("miner_uid")?,
        miner_hotkey: c.text("miner_hotkey")?,
        updated_at_ms: c.i64("updated_at_ms")?,
        specs: c.json("specs")?,
    })
}

fn allocation_from_row(row: &AnyRow) -> RecordsResult<AllocationRecord> {
    let c = Cols { row, table: "allocation" };
    Ok(AllocationRecord {
        id: c.text("id")?,
        netuid: c.u16("netuid")?,
        miner_uid: c.u16("miner_uid")?,
        miner_hotkey: c.text("miner_hotkey")?,
        renter: c.text("renter")?,
        created_at_ms: c.i64("created_at_ms")?,
        expires_at_ms: c.i64("expires_at_ms")?,
        ended_at_ms: c.opt_i64("ended_at_ms")?,
        status: c.text("status")?,
        resources: c.json("resources")?,
        access: c.json("access")?,
    })
}

pub(crate) fn score_from_row(row: &AnyRow) -> RecordsResult<ScoreRecord> {
    let c = Cols { row, table: "score" };
    Ok(ScoreRecord {
        created_at_ms: c.i64("created_at_ms")?,
        netuid: c.u16("netuid")?,
        block: c.u64("block")?,
        validator_hotkey: c.text("validator_hotkey")?,
        uid: c.u16("uid")?,
        hotkey: c.text("hotkey")?,
        score: c.f64("score")?,
        components: c.json("components")?,
    })
}

pub(crate) fn snapshot_from_row(row: &AnyRow) -> RecordsResult<NeuronSnapshot> {
    let c = Cols { row, table: "neuron_snapshot" };
    Ok(NeuronSnapshot {
        netuid: c.u16("netuid")?,
        block: c.u64("block")?,
        created_at_ms: c.i64("created_at_ms")?,
        uid: c.u16("uid")?,
        hotkey: c.text("hotkey")?,
        coldkey: c.text("coldkey")?,
        stake: c.u64("stake")?,
        incentive: c.f64("incentive")?,
        emission: c.u64("emission")?,
        consensus: c.f64("consensus")?,
        dividends: c.f64("dividends")?,
        validator_trust: c.f64("validator_trust")?,
        validator_permit: c.bool("validator_permit")?,
    })
}

impl Records {
    /// Runs `sql` with `args` and decodes every row with `decode`.
    pub(crate) async fn fetch<T>(
        &self,
        sql: String,
        args: Vec<Arg>,
        context: &'static str,
        decode: impl Fn(&AnyRow) -> RecordsResult<T>,
    ) -> RecordsResult<Vec<T>> {
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
            .fetch_all(&self.pool)
            .await
            .map_err(RecordsError::db(context))?;
        rows.iter().map(decode).collect()
    }

    /// A miner's last `limit` challenges, newest first: the compute validator's scoring window.
    pub async fn recent_challenges(&self, netuid: u16, miner_hotkey: &str, limit: u32) -> RecordsResult<Vec<ChallengeRecord>> {
        let limit = check_limit(limit)?;
        self.fetch(
            format!("{CHALLENGE_SELECT} WHERE netuid = $1 AND miner_hotkey = $2 ORDER BY created_at_ms DESC, seq DESC LIMIT $3"),
            vec![netuid.into(), miner_hotkey.into(), limit.into()],
            "reading recent challenges",
            challenge_from_row,
        )
        .await
    }

    /// A validator's newest `rounds` rounds of challenges to one miner, newest first: every
    /// challenge whose `created_at_ms` (a round's start, shared by the round's challenges) is
    /// among the `rounds` newest of that validator and miner. At most
    /// [`MAX_ROUNDS`] rounds; the rows are bounded by the validator's challenges per round.
    pub async fn recent_challenge_rounds(&self, netuid: u16, validator_hotkey: &str, miner_hotkey: &str, rounds: u32) -> RecordsResult<Vec<ChallengeRecord>> {
        if rounds == 0 || rounds > MAX_ROUNDS {
            return Err(RecordsError::InvalidInput { field: "rounds", reason: format!("must be 1 to {MAX_ROUNDS}, got {rounds}") });
        }
        self.fetch(
            format!(
                "{CHALLENGE_SELECT} WHERE netuid = $1 AND validator_hotkey = $2 AND miner_hotkey = $3 AND created_at_ms IN \
                 (SELECT DISTINCT created_at_ms FROM challenge WHERE netuid = $1 AND validator_hotkey = $2 AND miner_hotkey = $3 \
                 ORDER BY created_at_ms DESC LIMIT $4) ORDER BY created_at_ms DESC, seq DESC"
            ),
            vec![netuid.into(), validator_hotkey.into(), miner_hotkey.into(), i64::from(rounds).into()],
            "reading recent challenge rounds",
            challenge_from_row,
        )
        .await
    }

    /// Every miner's latest specs in a subnet, by uid.
    pub async fn specs(&self, netuid: u16) -> RecordsResult<Vec<SpecsRecord>> {
        self.fetch(
            "SELECT netuid, miner_hotkey, miner_uid, updated_at_ms, specs FROM specs WHERE netuid = $1 ORDER BY miner_uid, miner_hotkey"
                .to_string(),
            vec![netuid.into()],
            "reading specs",
            specs_from_row,
        )
        .await
    }

    /// A subnet's allocations, newest first.
    pub async fn allocations(&self, netuid: u16) -> RecordsResult<Vec<AllocationRecord>> {
        self.fetch(
            "SELECT id, netuid, miner_uid, miner_hotkey, renter, created_at_ms, expires_at_ms, ended_at_ms, status, resources, \
             access FROM allocation WHERE netuid = $1 ORDER BY created_at_ms DESC, id"
                .to_string(),
            vec![netuid.into()],
            "reading allocations",
            allocation_from_row,
        )
        .await
    }

    /// One inference record by id.
    pub async fn inference(&self, id: &str) -> RecordsResult<Option<InferenceRecord>> {
        let mut rows =
            self.fetch(format!("{INFERENCE_SELECT} WHERE id = $1"), vec![id.into()], "reading an inference record", inference_from_row).await?;
        Ok(rows.pop())
    }
}
