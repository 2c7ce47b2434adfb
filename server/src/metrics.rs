//! Counters for `GET /metrics`, in Prometheus's text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0];

#[derive(Default)]
pub struct Metrics {
    by_status: Mutex<BTreeMap<u16, u64>>,
    /// Per bucket (and one past the last: +Inf), the sum of latencies in microseconds.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    latency_us: AtomicU64,
    queries: AtomicU64,
    bytes_read: AtomicU64,
    in_flight: AtomicU64,
}

/// Counts queries in flight while it lives.
pub struct InFlight<'a>(&'a Metrics, u64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(self.1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// One answered search request.
    pub fn request(&self, status: u16, took: Duration) {
        *self.by_status.lock().unwrap_or_else(|e| e.into_inner()).entry(status).or_default() += 1;
        let secs = took.as_secs_f64();
        let b = BUCKETS.iter().position(|&le| secs <= le).unwrap_or(BUCKETS.len());
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        self.latency_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// `n` queries answered, having read `bytes` from the device.
    pub fn searched(&self, n: u64, bytes: u64) {
        self.queries.fetch_add(n, Ordering::Relaxed);
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `n` queries are being searched until the guard drops.
    pub fn in_flight(&self, n: u64) -> InFlight<'_> {
        self.in_flight.fetch_add(n, Ordering::Relaxed);
        InFlight(self, n)
    }

    /// The text of `/metrics`; `cache` is the index's (bytes held, hits, misses).
    pub fn render(&self, cache: Option<(u64, u64, u64)>, generation: u64) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# HELP quiver_requests_total Search requests answered, by HTTP status.");
        let _ = writeln!(o, "# TYPE quiver_requests_total counter");
        for (status, n) in self.by_status.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(o, "quiver_requests_total{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP quiver_request_seconds Search request latency.");
        let _ = writeln!(o, "# TYPE quiver_request_seconds histogram");
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let le = BUCKETS.get(i).map_or("+Inf".to_string(), |v| v.to_string());
            let _ = writeln!(o, "quiver_request_seconds_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(o, "quiver_request_seconds_sum {}", self.latency_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(o, "quiver_request_seconds_count {cumulative}");
        let gauges = [
            ("quiver_queries_total", "counter", "Query vectors searched.", self.queries.load(Ordering::Relaxed) as f64),
            (
                "quiver_device_bytes_read_total",
                "counter",
                "Bytes read from the device by searches (cached lists read nothing).",
                self.bytes_read.load(Ordering::Relaxed) as f64,
            ),
            (
                "quiver_queries_in_flight",
                "gauge",
                "Query vectors being searched now.",
                self.in_flight.load(Ordering::Relaxed) as f64,
            ),
            ("quiver_generation", "gauge", "The index generation served.", generation as f64),
        ];
        for (name, kind, help, v) in gauges {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        if let Some((bytes, hits, misses)) = cache {
            let rate = if hits + misses > 0 { hits as f64 / (hits + misses) as f64 } else { 0.0 };
            let _ =
                writeln!(o, "# HELP quiver_cache_hit_rate List extents served from the list cache, of all looked up.");
            let _ = writeln!(o, "# TYPE quiver_cache_hit_rate gauge\nquiver_cache_hit_rate {rate}");
            let _ = writeln!(o, "# HELP quiver_cache_bytes Bytes the list cache holds.");
            let _ = writeln!(o, "# TYPE quiver_cache_bytes gauge\nquiver_cache_bytes {bytes}");
        }
        o
    }
}
