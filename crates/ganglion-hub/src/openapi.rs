//! The OpenAPI 3 document served at `/api/openapi.json`, built from [`ROUTES`]. The router
//! is built from the same list ([`crate::server::api_routes`]) and a test checks both agree.

use serde_json::{Map, Value, json};

/// A query or path parameter.
#[derive(Debug, Clone, Copy)]
pub struct ParamDoc {
    /// Name.
    pub name: &'static str,
    /// `path` or `query`.
    pub location: &'static str,
    /// JSON schema type (`string`, `integer`, `boolean`).
    pub schema: &'static str,
    /// What it means and its bounds.
    pub description: &'static str,
}

/// One documented GET route.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    /// Path in OpenAPI (and axum 0.8) syntax: `/api/subnets/{netuid}`.
    pub path: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// Parameters.
    pub params: &'static [ParamDoc],
    /// Response media type.
    pub media_type: &'static str,
}

const NETUID: ParamDoc = ParamDoc { name: "netuid", location: "path", schema: "integer", description: "Subnet id (0–65535)." };
const HOTKEY: ParamDoc =
    ParamDoc { name: "hotkey", location: "path", schema: "string", description: "SS58 hotkey (base58, at most 64 characters)." };
const WINDOW: ParamDoc = ParamDoc {
    name: "window",
    location: "query",
    schema: "string",
    description: "Time window ending now: 15m, 1h, 6h, 24h, 7d or 30d. Windows up to 6h use minute buckets, longer ones hour buckets.",
};

const UID: ParamDoc = ParamDoc { name: "uid", location: "path", schema: "integer", description: "Uid (0–65535)." };
const WINDOW_DAY: ParamDoc = ParamDoc {
    name: "window",
    location: "query",
    schema: "string",
    description: "Time window ending now: 15m, 1h, 6h, 24h (default), 7d or 30d.",
};
const HISTORY_LIMIT: ParamDoc =
    ParamDoc { name: "limit", location: "query", schema: "integer", description: "The newest rows in the window, 1–1000 (default 500)." };

/// Every API route, documented.
pub const ROUTES: &[RouteDoc] = &[
    RouteDoc { path: "/api/status", summary: "Hub version, store backend and chain status.", params: &[], media_type: "application/json" },
    RouteDoc {
        path: "/api/subnets",
        summary: "Netuids with records or on the chain, and which views (inference, compute, reward, evaluation) each has.",
        params: &[],
        media_type: "application/json",
    },
    RouteDoc {
        path: "/api/subnets/{netuid}/overview",
        summary: "The metagraph (from the chain, else the last recorded snapshot) joined with each miner's request figures and failure causes in the window.",
        params: &[NETUID, WINDOW],
        media_type: "application/json",
    },
    RouteDoc {
        path: "/api/subnets/{netuid}/miners/{hotkey}",
        summary: "One miner: figures, failure causes, time series (TTFT, tokens/s, verification, similarity), per-model breakdown, recent requests, incentive history and scores.",
        params: &[NETUID, HOTKEY, WINDOW],
        media_type: "application/json",
    },
    RouteDoc {
        path: "/api/subnets/{netuid}/validators/{hotkey}",
        summary: "One validator: requests over time, recent requests and the scores it gave at its latest block.",
        params: &[NETUID, HOTKEY, WINDOW],
        media_type: "application/json",
    },
    RouteDoc {
        path: "/api/subnets/{netuid}/requests",
        summary: "Inference requests, newest first, filtered. Page with `before` = the previous page's `next_before`.",
        params: &[
            NETUID,
            ParamDoc { name: "miner", location: "query", schema: "string", description: "Only this miner hotkey." },
            ParamDoc { name: "validator", location: "query", schema: "string", description: "Only this validator hotkey." },
            ParamDoc { name: "model", location: "query", schema: "string", description: "Only this model (at most 200 characters)." },
            ParamDoc { name: "verified", location: "query", schema: "boolean", description: "Only verified (true) or failed (false) requests." },
            ParamDoc { name: "since", location: "query", schema: "integer", description: "Only requests at or after this time (ms since 1970)." },
            ParamDoc { name: "before", location: "query", schema: "integer", description: "Only requests strictly before this time (ms since 1970)." },
            ParamDoc { name: "limit", location: "query", schema: "integer", description: "Rows, 1–500 (default 50)." },
        ],
        media_type: "application/json",
    },
    RouteDoc {
        path: "/api/requests/{id}",
        summary: "One request: prompt, sampling parameters, seed, response, timings and verification detail.",
        params: &[ParamDoc { name: "id", location: "path", schema: "string", description: "Request id (1–200 characters of A–Z a–z 0–9 - _ . :)." }],
        media_type: "application/json",
    },
    RouteDoc {
        path: "/api/subnets/{netuid}/compute",
        summary: "Compute view: miners' specs, per-miner challenge figures in the window, allocations, recent challenges.",
        params: &[NETUID, WINDOW],
        media_type: "application/json",
    },
    RouteDoc {
        path: "/api/subnets/{netuid}/compute/miners/{hotkey}",
        summary: "One compute miner: specs, challenge history (difficulty, time, success), scores, incentive history, allocations.",
        params: &[
            NETUID,
            HOTKEY,
            ParamDoc { name: "limit", location: "query", schema: "integer", description: "Challenges, 1–1000 (default 200)." },
        ],
        media_type: "application/json",
    },
    RouteDoc {
        path: "/api/subnets/{netuid}/reward",
        summary: "Reward subnet: histograms of the combined reward and of each reward function's normalised value over the window (the newest 10 000 per-uid samples at most; `truncated` says when there were more), per-uid figures and the latest 50 steps.",
        params: &[NETUID, WINDOW_DAY, ParamDoc { name: "bins", location: "query", schema: "integer", description: "Histogram bins, 1–100 (default 20)." }],
        media_type: "application/json",
    },
    RouteDoc {
        path: "/api/subnets/{netuid}/reward/uids/{uid}",
        summary: "One uid's rewards over time, oldest first: the combined reward and each function's normalised value per step.",
        params: &[NETUID, UID, WINDOW_DAY, HISTORY_LIMIT],
        media_type: "application/json",
    },
    RouteDoc {
        path: "/api/subnets/{netuid}/evaluation",
        summary: "Model evaluation: the latest round (the newest evaluation's validator and step), one row per uid with loss, win rate, weight and status or cause.",
        params: &[NETUID],
        media_type: "application/json",
    },
    RouteDoc {
        path: "/api/subnets/{netuid}/evaluation/uids/{uid}",
        summary: "One uid's evaluations over time, oldest first (every validator's): loss, win rate, weight, status and cause.",
        params: &[
            NETUID,
            UID,
            ParamDoc { name: "window", location: "query", schema: "string", description: "Time window ending now: 15m, 1h, 6h, 24h, 7d (default) or 30d." },
            HISTORY_LIMIT,
        ],
        media_type: "application/json",
    },
    RouteDoc {
        path: "/api/events",
        summary: "Server-sent events as records arrive: `hello`, `inference`, `challenge`, `chain` (new block or reachability), `lagged` and `skipped` (refetch).",
        params: &[ParamDoc { name: "netuid", location: "query", schema: "integer", description: "Only this netuid's records." }],
        media_type: "text/event-stream",
    },
    RouteDoc { path: "/api/openapi.json", summary: "This document.", params: &[], media_type: "application/json" },
    RouteDoc { path: "/metrics", summary: "Prometheus metrics.", params: &[], media_type: "text/plain" },
];

/// The OpenAPI 3.0 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let params: Vec<Value> = route
            .params
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "in": p.location,
                    "required": p.location == "path",
                    "description": p.description,
                    "schema": {"type": p.schema},
                })
            })
            .collect();
        let ok_schema = if route.media_type == "application/json" { json!({"type": "object"}) } else { json!({"type": "string"}) };
        let operation = json!({
            "summary": route.summary,
            "operationId": operation_id(route.path),
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "content": {route.media_type: {"schema": ok_schema}}},
                "400": {"description": "Invalid parameter", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "404": {"description": "Unknown netuid, hotkey or id", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        paths.insert(route.path.to_string(), json!({"get": operation}));
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Ganglion hub",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Read-only API over the records store (inference requests, compute challenges, specs, allocations, scores) and the metagraph.",
        },
        "paths": paths,
        "components": {"schemas": {"Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}
            }}}
        }}},
    })
}

fn operation_id(path: &str) -> String {
    path.trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty() && *s != "api")
        .map(|s| s.trim_matches(|c| c == '{' || c == '}').replace('.', "_"))
        .collect::<Vec<_>>()
        .join("_")
}
