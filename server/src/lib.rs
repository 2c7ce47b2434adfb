//! `quiver serve`: an HTTP/1.1 JSON server over one index, on the library's public API.
//!
//! ```text
//! POST /v1/search   {"vectors": [[…], …], "k": 10, "nprobe": 16, "ef_search": 16, "k_factor": 1,
//!                    "coarse": "graph" | "exact"}
//!                   -> {"ids": [[…]], "distances": [[…]], "took_ms": …}   (missing: id -1, distance null)
//!                   or, with Content-Type: application/octet-stream, rows of little-endian
//!                   float32 as the body and ?k=10&nprobe=16&… (JSON parsing is 7–8 % of a
//!                   warm search of 16 to 1,024 queries: server/benches/body.rs)
//! GET  /v1/info     the index's parameters, as `quiver inspect --json` gives them
//! GET  /healthz     "ok"
//! GET  /metrics     Prometheus text: requests by status, latency histogram, device bytes read,
//!                   cache hit rate, queries in flight
//! POST /v1/reload   moves to the newest generation (also on SIGHUP); requests in flight finish
//!                   on the generation they started on
//! ```
//!
//! Searches run on a rayon pool of `threads`; at most `queue` requests are admitted at once
//! (running or waiting for the pool), the next gets 503 with `Retry-After`, so memory does not
//! grow with the offered load. Bodies, batches, k and nprobe are bounded; a request past its
//! timeout gets 504. SIGTERM (or Ctrl-C) stops accepting and finishes the requests in flight.

mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use quiver::{CoarseSearch, Index, OpenOptions, SearchParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use metrics::Metrics;

/// nprobe when a request gives none (the CLI sweeps 1, 4, 16, 64; a server answers with one).
pub const DEFAULT_NPROBE: usize = 16;

/// Bounds on what one request may ask for.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub body_bytes: usize,
    /// Most query vectors in one request.
    pub max_batch: usize,
    /// Largest k.
    pub max_k: usize,
    /// Requests admitted at once (searching, or waiting for a search thread); more get 503.
    pub queue: usize,
    /// A request not answered by then gets 504.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { body_bytes: 8 << 20, max_batch: 1024, max_k: 1024, queue: 64, timeout: Duration::from_secs(30) }
    }
}

/// Everything `quiver serve` is told.
#[derive(Clone, Debug)]
pub struct Config {
    pub index: PathBuf,
    pub addr: SocketAddr,
    /// Search threads (0: one per core).
    pub threads: usize,
    pub open: OpenOptions,
    /// Every request must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    pub limits: Limits,
}

/// Refuses to listen beyond loopback without a token: an open search endpoint on a network is
/// rarely what anyone meant.
pub fn check_bind(addr: &SocketAddr, token: Option<&str>) -> Result<(), String> {
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(format!(
            "--addr {addr} listens beyond this machine, and no --token-file was given: anyone who can reach it could query the index. Give --token-file FILE (clients send 'Authorization: Bearer <its content>'), or bind to 127.0.0.1"
        ));
    }
    Ok(())
}

/// The server's shared state.
pub struct Served {
    index: RwLock<Arc<Index>>,
    pool: rayon::ThreadPool,
    admitted: Arc<tokio::sync::Semaphore>,
    token: Option<Vec<u8>>,
    limits: Limits,
    pub metrics: Metrics,
}

impl Served {
    /// Opens the index and the search pool.
    pub fn new(config: &Config) -> Result<Arc<Served>, Box<dyn std::error::Error + Send + Sync>> {
        let index = Index::open_with(&config.index, config.open)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("quiver-serve-{i}"))
            .build()?;
        Ok(Arc::new(Served {
            index: RwLock::new(Arc::new(index)),
            pool,
            admitted: Arc::new(tokio::sync::Semaphore::new(config.limits.queue)),
            token: config.token.as_ref().map(|t| t.trim().as_bytes().to_vec()),
            limits: config.limits.clone(),
            metrics: Metrics::default(),
        }))
    }

    fn index(&self) -> Arc<Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Opens the newest generation and swaps it in; requests in flight keep the one they
    /// hold. Returns (generation, whether it changed).
    pub fn reload(&self) -> quiver::Result<(u64, bool)> {
        let current = self.index();
        let Some(fresh) = current.reopened()? else { return Ok((current.info().generation, false)) };
        let g = fresh.info().generation;
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        log::info!("{}: now serving generation {g}", current.dir().display());
        Ok((g, true))
    }

    /// Whether the request carries the token (compared in constant time), where one is set.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else { return true };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|v| v.trim().as_bytes())
            .unwrap_or_default();
        constant_time_eq(given, token)
    }
}

/// Equality of two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The routes, for `serve` and for tests.
pub fn router(state: Arc<Served>) -> Router {
    let limit = state.limits.body_bytes;
    Router::new()
        .route("/v1/search", post(search))
        .route("/v1/info", get(info))
        .route("/v1/reload", post(reload))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// A library error as an HTTP status: what the caller asked for is wrong (4xx), or the
/// server could not do it (5xx).
fn status_of(e: &quiver::Error) -> StatusCode {
    use quiver::Error as E;
    match e {
        E::InvalidParameter(_)
        | E::OutOfRange { .. }
        | E::DimensionMismatch { .. }
        | E::NonFiniteQuery { .. }
        | E::Unsupported(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchRequest {
    vectors: Vec<Vec<f32>>,
    k: Option<usize>,
    nprobe: Option<usize>,
    ef_search: Option<usize>,
    k_factor: Option<usize>,
    coarse: Option<String>,
}

/// A search's parameters, from a JSON body or a binary body's query string.
struct Knobs {
    k: Option<usize>,
    nprobe: Option<usize>,
    ef_search: Option<usize>,
    k_factor: Option<usize>,
    coarse: Option<CoarseSearch>,
}

/// `k=10&nprobe=16&ef_search=16&k_factor=1&coarse=exact` (each optional).
fn query_knobs(query: Option<&str>) -> Result<Knobs, String> {
    let mut k = Knobs { k: None, nprobe: None, ef_search: None, k_factor: None, coarse: None };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "coarse" {
            k.coarse = Some(value.parse()?);
            continue;
        }
        let v: usize = value.parse().map_err(|_| format!("{name}={value:?} is not a non-negative integer"))?;
        match name {
            "k" => k.k = Some(v),
            "nprobe" => k.nprobe = Some(v),
            "ef_search" => k.ef_search = Some(v),
            "k_factor" => k.k_factor = Some(v),
            other => return Err(format!("unknown parameter {other:?}: k, nprobe, ef_search, k_factor, coarse")),
        }
    }
    Ok(k)
}

/// A binary body: rows of `d` little-endian float32, one after another.
fn float32_rows(body: &[u8], d: usize) -> Result<Vec<f32>, String> {
    let row = 4 * d;
    if row == 0 || !body.len().is_multiple_of(row) {
        return Err(format!(
            "a float32 body of {} bytes is not whole rows of {d} values ({row} bytes each)",
            body.len()
        ));
    }
    Ok(body.as_chunks::<4>().0.iter().map(|b| f32::from_le_bytes(*b)).collect())
}

#[derive(Serialize)]
struct SearchResponse {
    ids: Vec<Vec<i64>>,
    /// None where fewer than k were found (JSON has no infinity).
    distances: Vec<Vec<Option<f32>>>,
    took_ms: f64,
}

async fn search(State(s): State<Arc<Served>>, RawQuery(query): RawQuery, headers: HeaderMap, body: Body) -> Response {
    let t0 = Instant::now();
    let r = search_inner(&s, &headers, query, body).await;
    let status = match &r {
        Ok(_) => StatusCode::OK,
        Err(resp) => resp.status(),
    };
    s.metrics.request(status.as_u16(), t0.elapsed());
    match r {
        Ok(resp) => resp,
        Err(resp) => resp,
    }
}

async fn search_inner(
    s: &Arc<Served>,
    headers: &HeaderMap,
    query: Option<String>,
    body: Body,
) -> Result<Response, Response> {
    if !s.authorized(headers) {
        return Err(error(StatusCode::UNAUTHORIZED, "missing or wrong 'Authorization: Bearer <token>'"));
    }
    let t0 = Instant::now();
    // Admitted before its body is read: a request turned away costs no buffer, so memory is
    // bounded by the admitted requests' bodies whatever the offered load.
    let Ok(permit) = s.admitted.clone().try_acquire_owned() else {
        let mut r =
            error(StatusCode::SERVICE_UNAVAILABLE, "the server is at its limit of requests in flight; retry shortly");
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return Err(r);
    };
    let body = axum::body::to_bytes(body, s.limits.body_bytes).await.map_err(|_| {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than this server's limit, {} bytes (--max-body)", s.limits.body_bytes),
        )
    })?;
    let index = s.index();
    let info = index.info();
    let d = info.dim;
    let binary =
        headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/octet-stream"));
    let (knobs, queries) = if binary {
        (
            query_knobs(query.as_deref()).map_err(|e| error(StatusCode::BAD_REQUEST, e))?,
            float32_rows(&body, d).map_err(|e| error(StatusCode::BAD_REQUEST, e))?,
        )
    } else {
        let req: SearchRequest = serde_json::from_slice(&body)
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("the body is not a search request: {e}")))?;
        if let Some((i, v)) = req.vectors.iter().enumerate().find(|(_, v)| v.len() != d) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("vector {i} has {} components, the index holds {d}-dimensional vectors", v.len()),
            ));
        }
        let coarse =
            req.coarse.as_deref().map(str::parse).transpose().map_err(|e: String| error(StatusCode::BAD_REQUEST, e))?;
        let knobs = Knobs { k: req.k, nprobe: req.nprobe, ef_search: req.ef_search, k_factor: req.k_factor, coarse };
        (knobs, req.vectors.into_iter().flatten().collect::<Vec<f32>>())
    };
    drop(body);
    let n = queries.len() / d.max(1);
    if n == 0 {
        return Err(error(StatusCode::BAD_REQUEST, "no query vectors: send at least one"));
    }
    if n > s.limits.max_batch {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{n} vectors in one request; at most {} (--max-batch)", s.limits.max_batch),
        ));
    }
    let req = knobs;
    let defaults = SearchParams::default();
    let params = SearchParams {
        k: req.k.unwrap_or(defaults.k),
        nprobe: req.nprobe.unwrap_or(if info.is_graph() { 1 } else { DEFAULT_NPROBE.min(info.nlist) }),
        ef_search: req.ef_search.unwrap_or(info.ef_search),
        k_factor: req.k_factor.unwrap_or(1),
        filter: None,
        coarse: req.coarse.unwrap_or_default(),
    };
    if params.k > s.limits.max_k {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("k = {} is above this server's limit, {} (--max-k)", params.k, s.limits.max_k),
        ));
    }
    let work = {
        let s = s.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _flight = s.metrics.in_flight(n as u64);
            s.pool.install(|| index.search(&queries, &params))
        })
    };
    let found = match tokio::time::timeout(s.limits.timeout, work).await {
        Err(_) => {
            return Err(error(StatusCode::GATEWAY_TIMEOUT, format!("not answered within {:?}", s.limits.timeout)))
        }
        Ok(Err(e)) => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("the search failed: {e}"))),
        Ok(Ok(Err(e))) => return Err(error(status_of(&e), e.to_string())),
        Ok(Ok(Ok(r))) => r,
    };
    s.metrics.searched(n as u64, found.stats.bytes_read);
    let k = found.k;
    let resp = SearchResponse {
        ids: found.ids.chunks(k).map(<[i64]>::to_vec).collect(),
        distances: found
            .distances
            .chunks(k)
            .zip(found.ids.chunks(k))
            .map(|(d, i)| d.iter().zip(i).map(|(&d, &i)| (i >= 0).then_some(d)).collect())
            .collect(),
        took_ms: t0.elapsed().as_secs_f64() * 1e3,
    };
    Ok(axum::Json(resp).into_response())
}

/// The index's parameters and list statistics (the keys of `quiver inspect --json`).
pub fn info_json(index: &Index) -> serde_json::Value {
    let i = index.info();
    let mut v = json!({
        "factory": i.factory,
        "dim": i.dim,
        "metric": i.metric.to_string(),
        "ntotal": i.ntotal,
        "deleted": i.deleted,
        "next_id": i.next_id,
        "generation": i.generation,
        "nlist": i.nlist,
        "pq_m": i.pq_m,
        "pq_nbits": i.pq_nbits,
        "hnsw_m": i.hnsw_m,
        "ef_search": i.ef_search,
        "refine": i.refine.map(|r| format!("{r:?}").to_lowercase()),
        "files": index.files().into_iter().map(|(n, k, b)| json!({"name": n, "kind": k, "bytes": b})).collect::<Vec<_>>(),
    });
    if let Some(s) = index.list_stats() {
        v["lists"] = json!({
            "empty": s.empty, "min": s.min, "max": s.max, "mean": s.mean,
            "p50": s.p50, "p90": s.p90, "p99": s.p99, "imbalance": s.imbalance,
        });
    }
    v
}

async fn info(State(s): State<Arc<Served>>, headers: HeaderMap) -> Response {
    if !s.authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong 'Authorization: Bearer <token>'");
    }
    axum::Json(info_json(&s.index())).into_response()
}

async fn reload(State(s): State<Arc<Served>>, headers: HeaderMap) -> Response {
    if !s.authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong 'Authorization: Bearer <token>'");
    }
    let served = s.clone();
    match tokio::task::spawn_blocking(move || served.reload()).await {
        Ok(Ok((g, changed))) => axum::Json(json!({"generation": g, "reloaded": changed})).into_response(),
        Ok(Err(e)) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, format!("reload failed, still serving the old generation: {e}"))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn metrics(State(s): State<Arc<Served>>, headers: HeaderMap) -> Response {
    if !s.authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong 'Authorization: Bearer <token>'");
    }
    let index = s.index();
    let text = s.metrics.render(index.cache_stats(), index.info().generation);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Serves `config` until SIGTERM or Ctrl-C; reloads on SIGHUP. Blocks the calling thread.
pub fn run(config: Config) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    check_bind(&config.addr, config.token.as_deref())?;
    let state = Served::new(&config)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        log::info!(
            "serving {} (generation {}) on http://{}",
            config.index.display(),
            state.index().info().generation,
            listener.local_addr()?
        );
        let on_hup = state.clone();
        tokio::spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
            while hup.recv().await.is_some() {
                let s = on_hup.clone();
                match tokio::task::spawn_blocking(move || s.reload()).await {
                    Ok(Ok((g, true))) => log::info!("SIGHUP: now serving generation {g}"),
                    Ok(Ok((g, false))) => log::info!("SIGHUP: generation {g} is already the newest"),
                    Ok(Err(e)) => log::error!("SIGHUP: reload failed, still serving the old generation: {e}"),
                    Err(e) => log::error!("SIGHUP: {e}"),
                }
            }
        });
        axum::serve(listener, router(state)).with_graceful_shutdown(shutdown_signal()).await?;
        log::info!("stopped: every request in flight was answered");
        Ok(())
    })
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
