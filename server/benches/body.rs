//! What a search request's body costs against the search it asks for: serde_json parsing the
//! vectors of a batch, against reading the same rows as little-endian float32, against the
//! search of that batch (an index given by QUIVER_BENCH_INDEX, warm, one thread).
//!
//! `QUIVER_BENCH_INDEX=/path/to/index cargo bench -p quiver-server --bench body`

use std::time::Instant;

use serde::Deserialize;

#[derive(Deserialize)]
struct Body {
    vectors: Vec<Vec<f32>>,
}

fn best_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let index = std::env::var("QUIVER_BENCH_INDEX").ok().map(|p| {
        let o = quiver::OpenOptions { cache_bytes: 1 << 30, cache_preload: true, ..Default::default() };
        quiver::Index::open_with(p, o).expect("open QUIVER_BENCH_INDEX")
    });
    let d = index.as_ref().map_or(128, |i| i.info().dim);
    let mut rng = quiver::Rng::new(1);
    for n in [1usize, 16, 256, 1024] {
        let rows: Vec<f32> = (0..n * d).map(|_| rng.next_f64() as f32 * 2.0 - 1.0).collect();
        let json =
            format!("{{\"vectors\": [{}]}}", rows.chunks(d).map(|r| format!("{r:?}")).collect::<Vec<_>>().join(","));
        let raw: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
        let parse = best_ms(20, || {
            let b: Body = serde_json::from_str(&json).unwrap();
            std::hint::black_box(b.vectors.len());
        });
        let binary = best_ms(20, || {
            let v: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            std::hint::black_box(v.len());
        });
        let search = index.as_ref().map(|ix| {
            let p = quiver::SearchParams { k: 10, nprobe: 16, ..Default::default() };
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            pool.install(|| ix.search(&rows, &p).unwrap());
            best_ms(5, || {
                pool.install(|| std::hint::black_box(ix.search(&rows, &p).unwrap().ids.len()));
            })
        });
        println!(
            "batch {n:>5} x {d}: JSON body {:>9} bytes parsed in {parse:.3} ms; float32 body {:>8} bytes read in {binary:.3} ms; search (nprobe 16, 1 thread, warm) {}",
            json.len(),
            raw.len(),
            search.map_or("not run (set QUIVER_BENCH_INDEX)".to_string(), |s| format!(
                "{s:.3} ms: JSON is {:.0} % of search + parse",
                100.0 * parse / (s + parse)
            ))
        );
    }
}
