//! The live feed: one poller reads rows newer than its cursor from the store (an indexed
//! `seq > cursor` range, cheap whatever the table size) and broadcasts them; each SSE client
//! holds a bounded receiver ([`crate::state::FEED_BUFFER`] events). A client that falls
//! behind gets a `lagged` event (and should refetch) instead of unbounded buffering; the
//! number of clients is capped (`max_sse_clients`, 503 beyond).
//!
//! The feed is exactly-once on both backends: the store assigns `seq` in commit order
//! (SQLite has one writer at a time; on PostgreSQL each insert transaction takes an
//! arrival-order lock before drawing its `seq`s, see `ganglion_records::write`), so no row can
//! appear below a cursor that has already moved past it. Only a bulk load larger than the
//! poller streams is skipped, and then announced (`skipped`).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use ganglion_records::{ChallengeSummary, Cursor, InferenceSummary};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::error::ApiError;
use crate::params::Params;
use crate::state::HubState;

/// Rows read per poll, and polls per tick before the poller skips ahead.
const POLL_LIMIT: u32 = 500;
const MAX_POLLS_PER_TICK: usize = 4;

/// What live clients receive.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeedEvent {
    /// A new inference record.
    Inference(InferenceSummary),
    /// A new challenge.
    Challenge(ChallengeSummary),
    /// The chain moved to a new block, or became (un)reachable.
    Chain {
        /// Best block known.
        block: u64,
        /// Whether the last sync succeeded.
        reachable: bool,
    },
    /// More rows arrived than the feed streams; clients should refetch.
    Skipped {
        /// Rows not streamed.
        rows: u64,
    },
}

impl FeedEvent {
    fn netuid(&self) -> Option<u16> {
        match self {
            FeedEvent::Inference(r) => Some(r.netuid),
            FeedEvent::Challenge(c) => Some(c.record.netuid),
            FeedEvent::Chain { .. } | FeedEvent::Skipped { .. } => None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            FeedEvent::Inference(_) => "inference",
            FeedEvent::Challenge(_) => "challenge",
            FeedEvent::Chain { .. } => "chain",
            FeedEvent::Skipped { .. } => "skipped",
        }
    }
}

/// Reads everything newer than `cursor` (bounded) and broadcasts it; returns the new cursor.
pub async fn poll_once(state: &HubState, mut cursor: Cursor) -> Cursor {
    let records = state.records();
    for _ in 0..MAX_POLLS_PER_TICK {
        let rows = match records.inference_since(cursor.inference, POLL_LIMIT).await {
            Ok(rows) => rows,
            Err(e) => {
                state.metrics().store_error();
                tracing::warn!(target: "ganglion::hub", "live feed cannot read the store: {e}");
                return cursor;
            }
        };
        let full = rows.len() == POLL_LIMIT as usize;
        for row in rows {
            cursor.inference = cursor.inference.max(row.seq);
            if state.shows(row.netuid) {
                publish(state, FeedEvent::Inference(row));
            }
        }
        if !full {
            break;
        }
    }
    match records.challenges_since(cursor.challenge, POLL_LIMIT).await {
        Ok(rows) => {
            for row in rows {
                cursor.challenge = cursor.challenge.max(row.seq);
                if state.shows(row.record.netuid) {
                    publish(state, FeedEvent::Challenge(row));
                }
            }
        }
        Err(e) => {
            state.metrics().store_error();
            tracing::warn!(target: "ganglion::hub", "live feed cannot read the store: {e}");
        }
    }
    // A bulk load: jump to the end instead of streaming it all.
    if let Ok(latest) = records.cursor().await
        && latest.inference > cursor.inference + i64::from(POLL_LIMIT)
    {
        let skipped = u64::try_from(latest.inference - cursor.inference).unwrap_or(0);
        publish(state, FeedEvent::Skipped { rows: skipped });
        cursor.inference = latest.inference;
    }
    cursor
}

fn publish(state: &HubState, event: FeedEvent) {
    // No receivers is fine: nobody is watching.
    if state.inner.feed.send(event).is_ok() {
        state.metrics().feed_event();
    }
}

/// Polls every `feed_poll` from the store's current end, until aborted.
pub(crate) async fn run(state: HubState) {
    let mut cursor = loop {
        match state.records().cursor().await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(target: "ganglion::hub", "live feed cannot read the store: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let mut interval = tokio::time::interval(state.config().feed_poll);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        // Nobody listening: just keep the cursor at the end.
        if state.inner.feed.receiver_count() == 0 {
            if let Ok(latest) = state.records().cursor().await {
                cursor = latest;
            }
            continue;
        }
        cursor = poll_once(&state, cursor).await;
    }
}

/// Decrements the client count when the stream is dropped (the client went away).
struct ClientSlot(HubState);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.inner.sse_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One live client: its bounded receiver, its slot, its filter.
struct Client {
    receiver: tokio::sync::broadcast::Receiver<FeedEvent>,
    stop: tokio::sync::watch::Receiver<bool>,
    _slot: ClientSlot,
    netuid: Option<u16>,
    hello: Option<Event>,
}

impl Client {
    /// The next event to send; None ends the stream (hub shutting down).
    async fn next(&mut self) -> Option<Event> {
        if let Some(hello) = self.hello.take() {
            return Some(hello);
        }
        loop {
            let received = tokio::select! {
                received = self.receiver.recv() => received,
                _ = self.stop.wait_for(|stopped| *stopped) => return None,
            };
            match received {
                Ok(event) => {
                    if self.netuid.is_some() && event.netuid().is_some() && event.netuid() != self.netuid {
                        continue;
                    }
                    let data = serde_json::to_string(&event).unwrap_or_else(|_| "{}".to_string());
                    return Some(Event::default().event(event.name()).data(data));
                }
                Err(RecvError::Lagged(missed)) => {
                    return Some(Event::default().event("lagged").data(serde_json::json!({"missed": missed}).to_string()));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// `GET /api/events?netuid=N`: server-sent events (`inference`, `challenge`, `chain`,
/// `lagged`, `skipped`), optionally only one netuid's records.
pub(crate) async fn events(
    State(state): State<HubState>,
    params: Params,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    params.only(&["netuid"])?;
    let netuid = params.netuid("netuid")?;
    let max = state.config().max_sse_clients;
    let taken = state.inner.sse_clients.fetch_add(1, Ordering::Relaxed);
    let slot = ClientSlot(state.clone());
    if taken >= max {
        drop(slot);
        return Err(ApiError::unavailable(format!("{max} live clients are already connected; retry later")));
    }
    let receiver = state.inner.feed.subscribe();
    let stop = state.inner.shutdown.subscribe();
    let hello = Event::default().event("hello").data(
        serde_json::json!({"chain": state.chain_status(), "netuid": netuid}).to_string(),
    );
    let client = Client { receiver, stop, _slot: slot, netuid, hello: Some(hello) };
    let stream = futures::stream::unfold(client, |mut client| async move {
        let event = client.next().await?;
        Some((Ok(event), client))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
