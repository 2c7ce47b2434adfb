//! The server end to end over real sockets: answers equal the library's, errors are 4xx JSON
//! with the library's message, limits hold (body, batch, k, queue), the token is required when
//! set, a new generation is picked up on reload while the old answers stay correct, and the
//! metrics count what happened.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quiver::{BuildOptions, CoarseSearch, Index, NoProgress, SearchParams, SliceSource, Synthetic};
use quiver_server::{check_bind, router, Config, Limits, Served};

const D: usize = 16;

fn build(dir: &Path) -> Vec<f32> {
    let mut rows = Vec::new();
    Synthetic::new(D, 3).rows(0, 3000, &mut rows);
    let opts = BuildOptions { factory: "IVF16_HNSW8,PQ8".into(), ..Default::default() };
    quiver::build_index(&SliceSource { data: &rows, dim: D }, dir, &opts, &NoProgress).unwrap();
    let mut q = Vec::new();
    Synthetic::new(D, 3).rows(10_000, 4, &mut q);
    q
}

/// A server on a free loopback port, in a runtime of its own; dropped with the test.
struct Server {
    addr: SocketAddr,
    state: Arc<Served>,
    _rt: tokio::runtime::Runtime,
}

fn start(dir: &Path, token: Option<&str>, limits: Limits) -> Server {
    let config = Config {
        index: dir.to_owned(),
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 2,
        open: Default::default(),
        token: token.map(str::to_string),
        limits,
    };
    let state = Served::new(&config).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind(config.addr)).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(state.clone());
    rt.spawn(async move { axum::serve(listener, app).await });
    Server { addr, state, _rt: rt }
}

/// One HTTP/1.1 request; returns the status and the body.
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

fn search_body(queries: &[f32], extra: &str) -> String {
    let rows: Vec<String> = queries
        .chunks(D)
        .map(|r| format!("[{}]", r.iter().map(f32::to_string).collect::<Vec<_>>().join(",")))
        .collect();
    format!("{{\"vectors\": [{}]{extra}}}", rows.join(","))
}

/// The `ids` of a search response, row after row.
fn ids_of(body: &str) -> Vec<i64> {
    json(body)["ids"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()))
        .collect()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn answers_equal_the_library_and_errors_are_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix");
    let q = build(&dir);
    let srv = start(&dir, None, Limits::default());
    let (status, body) =
        http(srv.addr, "POST", "/v1/search", &[], search_body(&q, ", \"k\": 5, \"nprobe\": 4").as_bytes());
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    let want = Index::open(&dir).unwrap().search(&q, &SearchParams { k: 5, nprobe: 4, ..Default::default() }).unwrap();
    assert_eq!(ids_of(&body), want.ids);
    assert!(v["took_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(v["distances"][0].as_array().unwrap().len(), 5);

    // Wrong dimension, k past the server's limit, efSearch 0 and a re-rank the index cannot
    // do (the library's own checks and messages), unknown field,
    // nprobe past nlist, a body that is not JSON: 400 with a JSON error.
    for (body, needle) in [
        ("{\"vectors\": [[1, 2]]}".to_string(), "has 2 components"),
        (search_body(&q[..D], ", \"k\": 1000000, \"nprobe\": 4"), "above this server's limit"),
        (search_body(&q[..D], ", \"ef_search\": 0"), "efSearch must be at least 1"),
        (search_body(&q[..D], ", \"k_factor\": 4"), "keeps no full vectors"),
        (search_body(&q[..D], ", \"nprobe\": 17"), "nprobe = 17 is out of range"),
        (search_body(&q[..D], ", \"kk\": 3"), "unknown field"),
        (search_body(&q[..D], ", \"coarse\": \"brute\""), "graph or exact"),
        ("not json".to_string(), "not a search request"),
        ("{\"vectors\": []}".to_string(), "no query vectors"),
    ] {
        let (status, resp) = http(srv.addr, "POST", "/v1/search", &[], body.as_bytes());
        assert_eq!(status, 400, "{body}: {resp}");
        assert!(json(&resp)["error"].as_str().unwrap().contains(needle), "{needle}: {resp}");
    }
    // The same search with a binary float32 body and the parameters in the query string.
    let raw: Vec<u8> = q.iter().flat_map(|v| v.to_le_bytes()).collect();
    let octet = [("Content-Type", "application/octet-stream")];
    let (status, body) = http(srv.addr, "POST", "/v1/search?k=5&nprobe=4", &octet, &raw);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["ids"], v["ids"]);
    // An exact coarse search, as the library answers it, by either body.
    let exact = SearchParams { k: 5, nprobe: 4, coarse: CoarseSearch::Exact, ..Default::default() };
    let want = Index::open(&dir).unwrap().search(&q, &exact).unwrap();
    let body = search_body(&q, ", \"k\": 5, \"nprobe\": 4, \"coarse\": \"exact\"");
    let (status, resp) = http(srv.addr, "POST", "/v1/search", &[], body.as_bytes());
    assert_eq!((status, ids_of(&resp)), (200, want.ids.clone()), "{resp}");
    let (status, resp) = http(srv.addr, "POST", "/v1/search?k=5&nprobe=4&coarse=exact", &octet, &raw);
    assert_eq!((status, ids_of(&resp)), (200, want.ids), "{resp}");
    for (path, bytes, needle) in [
        ("/v1/search?k=5", &raw[..raw.len() - 4], "not whole rows"),
        ("/v1/search?kk=5", &raw[..], "unknown parameter"),
        ("/v1/search?k=five", &raw[..], "not a non-negative integer"),
    ] {
        let (status, resp) = http(srv.addr, "POST", path, &octet, bytes);
        assert_eq!(status, 400, "{path}: {resp}");
        assert!(json(&resp)["error"].as_str().unwrap().contains(needle), "{resp}");
    }
    assert_eq!(http(srv.addr, "GET", "/healthz", &[], b"").0, 200);
    let (status, info) = http(srv.addr, "GET", "/v1/info", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(json(&info)["ntotal"], 3000);
    assert_eq!(json(&info)["factory"], "IVF16_HNSW8,PQ8");
    let (_, m) = http(srv.addr, "GET", "/metrics", &[], b"");
    assert!(m.contains("quiver_requests_total{status=\"200\"} 4"), "{m}");
    assert!(m.contains("quiver_requests_total{status=\"400\"} 12"), "{m}");
    assert!(m.contains("quiver_queries_total 16"), "{m}");
    assert!(m.contains("quiver_request_seconds_bucket{le=\"+Inf\"} 16"), "{m}");
}

#[test]
fn limits_hold_and_the_token_is_required() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix");
    let q = build(&dir);
    let limits = Limits { body_bytes: 4096, max_batch: 2, ..Limits::default() };
    let srv = start(&dir, Some("s3cret"), limits);
    let auth = [("Authorization", "Bearer s3cret")];
    let small = search_body(&q[..2 * D], "");
    assert_eq!(http(srv.addr, "POST", "/v1/search", &auth, small.as_bytes()).0, 200);
    for bad in [&[][..], &[("Authorization", "Bearer nope")][..], &[("Authorization", "s3cret")][..]] {
        let (status, body) = http(srv.addr, "POST", "/v1/search", bad, small.as_bytes());
        assert_eq!(status, 401, "{bad:?}: {body}");
        assert_eq!(http(srv.addr, "GET", "/v1/info", bad, b"").0, 401);
    }
    assert_eq!(http(srv.addr, "GET", "/healthz", &[], b"").0, 200, "health needs no token");
    assert_eq!(http(srv.addr, "POST", "/v1/search", &auth, search_body(&q, "").as_bytes()).0, 413, "batch of 4 > 2");
    let big = format!("{{\"vectors\": [[{}]]}}", vec!["0.5"; 3000].join(","));
    assert_eq!(http(srv.addr, "POST", "/v1/search", &auth, big.as_bytes()).0, 413, "body over 4 KiB");

    // No admission slot: 503 with Retry-After, at once.
    let full = start(&dir, None, Limits { queue: 0, ..Limits::default() });
    let mut s = TcpStream::connect(full.addr).unwrap();
    let body = search_body(&q[..D], "");
    write!(
        s,
        "POST /v1/search HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(out.to_lowercase().contains("retry-after: 1"), "{out}");

    assert!(check_bind(&"0.0.0.0:7700".parse().unwrap(), None).unwrap_err().contains("--token-file"));
    assert!(check_bind(&"0.0.0.0:7700".parse().unwrap(), Some("t")).is_ok());
    assert!(check_bind(&"127.0.0.1:7700".parse().unwrap(), None).is_ok());
}

#[test]
fn reload_picks_up_a_new_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix");
    let q = build(&dir);
    let srv = start(&dir, None, Limits::default());
    let ask = || json(&http(srv.addr, "POST", "/v1/search", &[], search_body(&q, ", \"k\": 3").as_bytes()).1);
    let before = ask();
    let nearest: Vec<i64> = before["ids"].as_array().unwrap().iter().map(|r| r[0].as_i64().unwrap()).collect();
    quiver::delete_ids(&dir, &nearest).unwrap();
    assert_eq!(ask()["ids"], before["ids"], "the served generation holds until a reload");
    let (status, r) = http(srv.addr, "POST", "/v1/reload", &[], b"");
    assert_eq!(status, 200, "{r}");
    assert_eq!((json(&r)["generation"].as_u64(), json(&r)["reloaded"].as_bool()), (Some(2), Some(true)));
    let after = ask();
    for (row, gone) in after["ids"].as_array().unwrap().iter().zip(&nearest) {
        assert!(!row.as_array().unwrap().iter().any(|x| x.as_i64() == Some(*gone)), "{after}");
    }
    assert_eq!(json(&http(srv.addr, "POST", "/v1/reload", &[], b"").1)["reloaded"], false);
    assert!(srv.state.metrics.render(None, 2).contains("quiver_generation 2"));
}

/// Under more concurrent requests than it admits, the server answers every one: 200 for
/// those admitted, 503 with Retry-After for the rest, nothing else; and the admitted ones are
/// the library's answers.
#[test]
fn overload_gets_503_not_a_queue_that_grows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix");
    let q = build(&dir);
    let srv = start(&dir, None, Limits { queue: 2, ..Limits::default() });
    // A batch heavy enough (256 queries) that requests overlap.
    let heavy: Vec<f32> = q.iter().cycle().take(256 * D).copied().collect();
    let body = search_body(&heavy, ", \"k\": 10, \"nprobe\": 16");
    let want =
        Index::open(&dir).unwrap().search(&heavy, &SearchParams { k: 10, nprobe: 16, ..Default::default() }).unwrap();
    let statuses: Vec<(u16, String)> = std::thread::scope(|s| {
        let hs: Vec<_> =
            (0..24).map(|_| s.spawn(|| http(srv.addr, "POST", "/v1/search", &[], body.as_bytes()))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|s| s.0 == 200).count();
    let busy = statuses.iter().filter(|s| s.0 == 503).count();
    assert_eq!(ok + busy, statuses.len(), "{:?}", statuses.iter().map(|s| s.0).collect::<Vec<_>>());
    assert!(ok >= 1, "nothing was admitted");
    for (_, body) in statuses.iter().filter(|s| s.0 == 200) {
        assert_eq!(ids_of(body), want.ids);
    }
    eprintln!("24 concurrent requests, 2 admitted at once: {ok} answered, {busy} told to retry");
}
