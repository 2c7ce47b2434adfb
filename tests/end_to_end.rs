//! Build → open → search on generated and real data, with recall against exact ground truth.

mod common;

use common::*;
use quiver::{CachePolicy, CoarseSearch, Index, IoMode, Metric, OpenOptions, SearchParams, Searcher, VectorFile};

#[test]
fn generated_l2_recall_grows_with_nprobe_and_reads_only_probed_extents() {
    let (d, n, nq) = (32, 20_000, 100);
    let (base, queries) = synthetic(n, nq, d, 1);
    let gt = ground_truth(&base, &queries, d, 10, Metric::L2);
    let dir = tempfile::tempdir().unwrap();
    let report = build_slice(&base, d, dir.path(), &opts("IVF64_HNSW16,PQ16", Metric::L2));
    assert_eq!(report.ntotal, n as u64);
    let index = Index::open(dir.path()).unwrap();
    let mut last = 0.0;
    for nprobe in [1, 4, 16, 64] {
        let res = index.search(&queries, &SearchParams { k: 10, nprobe, ef_search: 16, ..Default::default() }).unwrap();
        let r = recall_at(&res.ids, 10, &gt, 10);
        assert!(r >= last - 0.01, "recall fell from {last} to {r} at nprobe {nprobe}");
        last = r;
        // Every probed extent and nothing else: the sum of their page-rounded lengths.
        assert!(res.stats.bytes_read.is_multiple_of(4096) && res.stats.bytes_read > 0);
        assert!(res.stats.extents_read <= (nq * nprobe) as u64);
    }
    // nprobe = nlist scans every code: what is left is PQ error. PQ16 on 32-d (2-d
    // sub-vectors) keeps 10-recall@10 near 0.75 here; the floor leaves room for seeds.
    assert!(last > 0.6, "recall at nprobe 64 is {last}");
}

#[test]
fn bytes_read_equal_the_probed_extents() {
    let (d, n) = (16, 5_000);
    let (base, queries) = synthetic(n, 1, d, 2);
    let dir = tempfile::tempdir().unwrap();
    build_slice(&base, d, dir.path(), &opts("IVF32_HNSW8,PQ8", Metric::L2));
    let index = Index::open(dir.path()).unwrap();
    for nprobe in [1, 3, 32] {
        let res = index.search(&queries, &SearchParams { k: 5, nprobe, ef_search: 64, ..Default::default() }).unwrap();
        assert_eq!(res.stats.extents_read, nprobe as u64, "one extent per probed list");
        let max = (0..32).map(|l| index.list_len(l)).max().unwrap();
        let per_extent = (max * (8 + 8)).div_ceil(4096) * 4096;
        assert!(res.stats.bytes_read <= nprobe as u64 * per_extent);
    }
    let all = index.search(&queries, &SearchParams { k: 5, nprobe: 32, ef_search: 64, ..Default::default() }).unwrap();
    let seg_area = std::fs::metadata(segment_path(dir.path())).unwrap().len() - 4096;
    assert_eq!(all.stats.bytes_read, seg_area, "nprobe = nlist reads the whole extent area once");
    // Lists lie in order in the segment: all 32 extents (well under 1 MiB) are one read.
    assert_eq!((all.stats.extents_read, all.stats.reads), (32, 1));
    for nprobe in [1, 3] {
        let res = index.search(&queries, &SearchParams { k: 5, nprobe, ef_search: 64, ..Default::default() }).unwrap();
        assert!(res.stats.reads >= 1 && res.stats.reads <= res.stats.extents_read);
    }
}

#[test]
fn seeded_build_is_byte_identical() {
    let (d, n) = (16, 6_000);
    let (base, _) = synthetic(n, 0, d, 3);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let o = opts("IVF32_HNSW16,PQ8", Metric::L2);
    build_slice(&base, d, a.path(), &o);
    build_slice(&base, d, b.path(), &o);
    // The index's files (the writers' lock file beside them is no part of it).
    let mut names: Vec<_> = std::fs::read_dir(a.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.as_os_str() != quiver::store::LOCK)
        .collect();
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    for name in names {
        let (x, y) = (std::fs::read(a.path().join(&name)).unwrap(), std::fs::read(b.path().join(&name)).unwrap());
        assert!(x == y, "{name:?} differs between two builds with the same seed");
    }
}

#[test]
fn io_uring_and_pread_return_identical_results() {
    let (d, n, nq) = (24, 8_000, 50);
    let (base, queries) = synthetic(n, nq, d, 4);
    let dir = tempfile::tempdir().unwrap();
    build_slice(&base, d, dir.path(), &opts("IVF32_HNSW16,PQ8", Metric::L2));
    let p = SearchParams { k: 10, nprobe: 8, ef_search: 16, ..Default::default() };
    let pread = Index::open_with(dir.path(), OpenOptions { io: IoMode::Pread, ..Default::default() })
        .unwrap()
        .search(&queries, &p)
        .unwrap();
    assert_eq!(pread.stats.io, Some(quiver::IoEngine::Pread));
    match Index::open_with(dir.path(), OpenOptions { io: IoMode::Uring, ..Default::default() })
        .unwrap()
        .search(&queries, &p)
    {
        Ok(uring) => {
            assert_eq!(uring.stats.io, Some(quiver::IoEngine::Uring));
            assert_eq!(uring.ids, pread.ids);
            assert_eq!(uring.distances, pread.distances);
            assert_eq!(uring.stats.bytes_read, pread.stats.bytes_read);
        }
        Err(e) => eprintln!("SKIPPED io_uring comparison: {e}"),
    }
}

#[test]
fn precomputed_tables_give_the_same_results_as_per_list_tables() {
    // 8-bit at dsub = 8 (the tables are built from there on: quiver::PRECOMPUTED_MIN_DSUB):
    // a list's part of each distance comes from the tables or is computed per list, the same
    // numbers either way. 4-bit residual codes never keep tables (their parts cost less to
    // compute than to read).
    let (d, n, nq) = (64, 10_000, 100);
    let (base, queries) = synthetic(n, nq, d, 8);
    for (factory, tables) in [("IVF64_HNSW16,PQ8", 64 * 8 * 256 * 4), ("IVF64_HNSW16,PQ32x4fsr", 0)] {
        let dir = tempfile::tempdir().unwrap();
        build_slice(&base, d, dir.path(), &opts(factory, Metric::L2));
        let p = SearchParams { k: 10, nprobe: 16, ef_search: 16, ..Default::default() };
        let index = Index::open(dir.path()).unwrap();
        assert_eq!(index.precomputed_table_bytes(), tables, "{factory}");
        let with = index.search(&queries, &p).unwrap();
        let off =
            Index::open_with(dir.path(), OpenOptions { precomputed_table_max_bytes: 0, ..Default::default() }).unwrap();
        assert_eq!(off.precomputed_table_bytes(), 0);
        let without = off.search(&queries, &p).unwrap();
        assert_eq!((&with.ids, &with.distances), (&without.ids, &without.distances), "{factory}");
    }
}

#[test]
fn the_list_cache_changes_where_bytes_come_from_not_the_results() {
    for factory in ["IVF64_HNSW16,PQ8", "IVF64_HNSW16,PQ16x4fs", "IVF64_HNSW16,PQ16x4fsr"] {
        cache_changes_nothing_but_reads(factory);
    }
}

fn cache_changes_nothing_but_reads(factory: &str) {
    let (d, n, nq) = (32, 20_000, 100);
    let (base, queries) = synthetic(n, nq, d, 12);
    let dir = tempfile::tempdir().unwrap();
    build_slice(&base, d, dir.path(), &opts(factory, Metric::L2));
    let p = SearchParams { k: 10, nprobe: 8, ef_search: 16, ..Default::default() };
    let plain = Index::open(dir.path()).unwrap().search(&queries, &p).unwrap();
    assert_eq!((plain.stats.cache_hits, plain.stats.cache_misses), (0, 0));
    // Every extent, and for L2 indexes of residual codes 4 bytes per vector of terms beside
    // them; 8-bit codes on a CPU with AVX-512 VBMI keep a transposed copy too (8 bytes a
    // vector here), scanned with the in-register kernel: results are still the scalar scan's.
    let terms = if factory.ends_with("x4fs") { 0 } else { 4 * n as u64 };
    let transposed = if factory.ends_with(",PQ8") && quiver::pq::fast8::available() { 8 * n as u64 } else { 0 };
    let derived = terms + transposed;
    let index_bytes = std::fs::metadata(dir.path().join("seg-000000.qvs")).unwrap().len() + derived;
    let open = |cache_bytes, policy, preload| {
        let o = OpenOptions { cache_bytes, cache_policy: policy, cache_preload: preload, ..Default::default() };
        Index::open_with(dir.path(), o).unwrap()
    };
    for (cache_bytes, policy) in [
        (4096, CachePolicy::Frequency),
        (64 << 10, CachePolicy::Frequency),
        (64 << 10, CachePolicy::Lru),
        (index_bytes, CachePolicy::Frequency),
    ] {
        let index = open(cache_bytes, policy, false);
        for pass in 0..2 {
            let r = index.search(&queries, &p).unwrap();
            assert_eq!(r.ids, plain.ids, "{cache_bytes} B {policy:?} pass {pass}");
            same_distances(&r.distances, &plain.distances, factory);
            assert_eq!(r.stats.cache_hits + r.stats.cache_misses, plain.stats.extents_read);
            assert!(index.cache_stats().unwrap().0 <= cache_bytes);
            if cache_bytes == index_bytes && pass == 1 {
                assert_eq!(r.stats.bytes_read, 0, "warm: nothing from the device");
            }
        }
    }
    let preloaded = open(index_bytes, CachePolicy::Frequency, true);
    let r = preloaded.search(&queries, &p).unwrap();
    assert_eq!((r.ids, r.stats.bytes_read), (plain.ids, 0));
}

/// Fast-scan distances are the same bit for bit whether a list is cached or not; an 8-bit L2
/// list read from the device is scanned with its own table (part + query's, added per entry),
/// a cached one with per-vector terms plus the query's table: the same sums in another order.
fn same_distances(got: &[f32], want: &[f32], factory: &str) {
    if factory.ends_with("PQ8") {
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{factory}: {a} vs {b}");
        }
    } else {
        assert_eq!(got, want, "{factory}");
    }
}

/// 4-bit fast-scan codes end to end, raw (`x4fs`, as faiss's default) and residual (`x4fsr`),
/// for L2 and inner product: the index says what it is, `verify` walks its blocks, recall grows
/// with nprobe and, at the same 16 bytes per vector, is close to 8-bit PQ16's; io_uring and
/// pread agree; every extent is sized as layout 2 says.
#[test]
fn fast_scan_indexes_build_verify_and_search() {
    let (d, n, nq) = (32, 20_000, 100);
    let (base, queries) = synthetic(n, nq, d, 31);
    for metric in [Metric::L2, Metric::InnerProduct] {
        let gt = ground_truth(&base, &queries, d, 10, metric);
        let pq8 = tempfile::tempdir().unwrap();
        build_slice(&base, d, pq8.path(), &opts("IVF64_HNSW16,PQ16", metric));
        let eight = Index::open(pq8.path()).unwrap();
        for (factory, residual) in [("IVF64_HNSW16,PQ32x4fs", false), ("IVF64_HNSW16,PQ32x4fsr", true)] {
            let fs = tempfile::tempdir().unwrap();
            build_slice(&base, d, fs.path(), &opts(factory, metric));
            let report = quiver::verify_index(fs.path()).unwrap();
            assert!(report.faults.is_empty(), "{:?}", report.faults);
            assert_eq!(report.vectors, n as u64);
            let index = Index::open(fs.path()).unwrap();
            let info = index.info();
            assert_eq!((info.pq_m, info.pq_nbits, info.by_residual, info.factory.as_str()), (32, 4, residual, factory));
            assert_eq!(info.code_layout(), quiver::format::CodeLayout::Blocks32 { code_size: 16 });
            let seg_area = std::fs::metadata(segment_path(fs.path())).unwrap().len() - 4096;
            let layout = info.code_layout();
            let want: u64 = (0..64).map(|l| index.list_len(l)).filter(|&c| c > 0).map(|c| layout.extent_len(c)).sum();
            assert_eq!(seg_area, want, "one extent per list, sized as layout 2 says");
            let mut last = 0.0;
            for nprobe in [1, 8, 64] {
                let p = SearchParams { k: 10, nprobe, ef_search: 16, ..Default::default() };
                let res = index.search(&queries, &p).unwrap();
                let r = recall_at(&res.ids, 10, &gt, 10);
                let r8 = recall_at(&eight.search(&queries, &p).unwrap().ids, 10, &gt, 10);
                let what = format!("{factory} {metric:?} nprobe {nprobe}");
                assert!(r >= last - 0.01, "{what}: recall fell from {last} to {r}");
                // 16 centroids on 1-d sub-vectors against 256 on 2-d: about as good.
                assert!(r >= r8 - 0.1, "{what}: fast-scan {r}, PQ16 {r8}");
                last = r;
                let pread =
                    Index::open_with(fs.path(), OpenOptions { io: IoMode::Pread, ..Default::default() }).unwrap();
                assert_eq!(pread.search(&queries, &p).unwrap().ids, res.ids);
            }
            assert!(last > 0.6, "{factory} {metric:?}: recall at nprobe 64 is {last}");
        }
    }
}

#[test]
fn a_searcher_answers_as_the_index_does_and_says_what_each_query_cost() {
    let (d, n, nq) = (32, 10_000, 60);
    let (base, queries) = synthetic(n, nq, d, 14);
    let dir = tempfile::tempdir().unwrap();
    build_slice(&base, d, dir.path(), &opts("IVF32_HNSW16,PQ8", Metric::L2));
    let index = Index::open(dir.path()).unwrap();
    let p = SearchParams { k: 10, nprobe: 8, ef_search: 16, ..Default::default() };
    let plain = index.search(&queries, &p).unwrap();
    for threads in [1, 3] {
        let searcher = Searcher::new(&index, threads).unwrap();
        assert_eq!(searcher.threads(), threads);
        for _ in 0..2 {
            let b = searcher.search(&queries, &p).unwrap();
            assert_eq!((&b.results.ids, &b.results.distances), (&plain.ids, &plain.distances));
            assert_eq!((b.latencies_ms.len(), b.per_query.len()), (nq, nq));
            assert!(b.latencies_ms.iter().all(|&ms| ms > 0.0 && ms <= b.wall_s * 1e3));
            let bytes: u64 = b.per_query.iter().map(|s| s.bytes_read).sum();
            assert_eq!(bytes, plain.stats.bytes_read);
        }
    }
    assert!(matches!(
        Searcher::new(&index, 1).unwrap().search(&queries[..d - 1], &p),
        Err(quiver::Error::DimensionMismatch { .. })
    ));
}

/// The exact coarse search (every centroid's distance: bfloat16 tiles screened then float32
/// where the CPU has AMX, float32 otherwise) answers alike one query at a time, in grouped
/// batches, in waves of queries in flight, through `Index::search` (waves of 16), and as a
/// graph walk wide enough to see every centroid does, from the device and from a cache.
#[test]
fn exact_coarse_search_answers_alike_on_every_path() {
    let (d, n, nq, nlist) = (32, 10_000, 70, 64);
    let (base, queries) = synthetic(n, nq, d, 16);
    for (factory, metric) in [
        ("IVF64_HNSW8,PQ8", Metric::L2),
        ("IVF64_HNSW8,PQ16x4fs", Metric::L2),
        ("IVF64_HNSW8,PQ16x4fsr", Metric::InnerProduct),
        ("IVF64_HNSW8,PQ8,RFlat", Metric::L2),
        ("IVF64_HNSW8,Flat", Metric::Cosine),
    ] {
        let dir = tempfile::tempdir().unwrap();
        build_slice(&base, d, dir.path(), &opts(factory, metric));
        // From the device and from a cache.
        for cache_bytes in [0, 64 << 20] {
            let index = Index::open_with(dir.path(), OpenOptions { cache_bytes, ..Default::default() }).unwrap();
            exact_coarse_paths_agree(&index, &queries, nlist, &format!("{factory} {metric:?} cache {cache_bytes}"));
        }
    }
}

fn exact_coarse_paths_agree(index: &Index, queries: &[f32], nlist: usize, what: &str) {
    let exact = SearchParams { k: 10, nprobe: 6, ef_search: 1, coarse: CoarseSearch::Exact, ..Default::default() };
    let wide = SearchParams { ef_search: nlist, coarse: CoarseSearch::Graph, ..exact.clone() };
    let plain = Searcher::new(index, 1).unwrap().search(queries, &exact).unwrap().results;
    assert_eq!(index.search(queries, &exact).unwrap().ids, plain.ids, "{what}: Index::search");
    let walked = index.search(queries, &wide).unwrap();
    assert_eq!(plain.ids, walked.ids, "{what}: a walk that sees every centroid");
    for threads in [1, 3] {
        let grouped = Searcher::new(index, threads).unwrap().search_grouped(queries, &exact).unwrap().results;
        let waves = Searcher::new(index, threads).unwrap().with_inflight(5).unwrap().search(queries, &exact).unwrap();
        for (got, how) in [(&grouped, "grouped"), (&waves.results, "in waves")] {
            assert_eq!(got.ids, plain.ids, "{what} threads {threads}: {how}");
            assert_eq!(got.distances, plain.distances, "{what} threads {threads}: {how}");
        }
    }
}

/// A grouped batch (each probed list scanned once for all its queries) answers exactly as
/// one query at a time does — both codecs, both metrics, 1 and 3 threads, from the device and
/// from a cache — and reads each probed extent at most twice per batch (once in the pass over
/// every query's closest list, once in the pass over the rest) instead of once per query.
#[test]
fn grouped_batches_answer_as_single_queries_do() {
    let (d, n, nq) = (32, 10_000, 80);
    let (base, queries) = synthetic(n, nq, d, 15);
    for (factory, metric) in [
        ("IVF32_HNSW16,PQ8", Metric::L2),
        ("IVF32_HNSW16,PQ16x4fs", Metric::L2),
        ("IVF32_HNSW16,PQ16x4fsr", Metric::L2),
        ("IVF32_HNSW16,PQ16x4fsr", Metric::InnerProduct),
        ("IVF32_HNSW16,PQ8", Metric::InnerProduct),
    ] {
        let dir = tempfile::tempdir().unwrap();
        build_slice(&base, d, dir.path(), &opts(factory, metric));
        for cache_bytes in [0, 64 << 20] {
            let index = Index::open_with(dir.path(), OpenOptions { cache_bytes, ..Default::default() }).unwrap();
            let p = SearchParams { k: 10, nprobe: 8, ef_search: 16, ..Default::default() };
            let plain = index.search(&queries, &p).unwrap();
            for threads in [1, 3] {
                let b = Searcher::new(&index, threads).unwrap().search_grouped(&queries, &p).unwrap();
                let what = format!("{factory} {metric:?} cache {cache_bytes} threads {threads}");
                assert_eq!(b.results.ids, plain.ids, "{what}");
                assert_eq!(b.results.distances, plain.distances, "{what}");
                assert!(b.latencies_ms.is_empty() && b.per_query.is_empty());
                // Each of the 32 lists (one extent each here) at most once per pass, against
                // nprobe per query; 8-bit codes run query by query (their tables outweigh a list).
                let probed = b.results.stats.extents_read + b.results.stats.cache_hits;
                let per_query = plain.stats.extents_read + plain.stats.cache_hits;
                let grouped = !factory.ends_with("PQ8");
                let want = if grouped { probed <= 2 * 32 } else { probed == per_query };
                assert!(want && per_query == (nq * 8) as u64, "{what}: {probed} / {per_query} extents");
            }
        }
    }
}

#[test]
fn inner_product_and_cosine_find_their_own_neighbours() {
    let (d, n, nq) = (32, 10_000, 50);
    let (base, queries) = synthetic(n, nq, d, 5);
    for metric in [Metric::InnerProduct, Metric::Cosine] {
        let gt = ground_truth(&base, &queries, d, 10, metric);
        let dir = tempfile::tempdir().unwrap();
        build_slice(&base, d, dir.path(), &opts("IVF32_HNSW16,PQ16", metric));
        let index = Index::open(dir.path()).unwrap();
        let res =
            index.search(&queries, &SearchParams { k: 10, nprobe: 32, ef_search: 32, ..Default::default() }).unwrap();
        let r = recall_at(&res.ids, 10, &gt, 10);
        assert!(r > 0.5, "{metric}: recall {r}");
        // Similarities come back largest first.
        for q in 0..nq {
            let ds = res.distances_of(q);
            assert!(ds.windows(2).all(|w| w[0] >= w[1]), "{metric}: {ds:?}");
        }
    }
}

#[test]
fn verify_walks_every_extent() {
    let (d, n) = (16, 3_000);
    let (base, _) = synthetic(n, 0, d, 6);
    let dir = tempfile::tempdir().unwrap();
    build_slice(&base, d, dir.path(), &opts("IVF16_HNSW8,PQ4", Metric::L2));
    let index = Index::open(dir.path()).unwrap();
    let r = index.verify().unwrap();
    assert_eq!(r.vectors, n as u64);
    let s = index.list_stats().expect("an IVF index has lists");
    assert_eq!((s.nlist, (s.mean * 16.0).round() as usize), (16, n));
}

/// 10-recall@10 at each (nprobe, faiss's figure) must be above faiss's minus `tolerance`.
fn assert_recall_near_faiss(
    name: &str,
    index: &Index,
    q: &[f32],
    gt: &[Vec<u64>],
    faiss: &[(usize, f64)],
    tolerance: f64,
) {
    for &(nprobe, want) in faiss {
        let res = index.search(q, &SearchParams { k: 10, nprobe, ef_search: 16, ..Default::default() }).unwrap();
        let r = recall_at(&res.ids, 10, gt, 10);
        eprintln!("{name} nprobe {nprobe}: quiver {r:.3}, faiss {want:.3}");
        assert!(
            r > want - tolerance,
            "{name} nprobe {nprobe}: recall {r} below faiss's {want} by more than {tolerance}"
        );
    }
}

/// Real SIFT descriptors (sift5k-ngt, L2). faiss 1.15.1 at the same parameters, from
/// `python faiss_baseline.py --base ../data/sift5k-ngt/sift5k_base.fvecs
///  --query ../data/sift5k-ngt/sift5k_query.fvecs --gt ../data/sift5k-ngt/sift5k_groundtruth.ivecs
///  --factory IVF64_HNSW32,PQ32 --nprobe 1,4,16,64 --train-size 4500` (in ../shared/bench)
/// gave 10-recall@10 = 0.407 / 0.705 / 0.828 / 0.833. faiss's spread across seeds is about
/// ±0.01 and 500 queries add sampling noise of about ±0.01, so the floor is faiss − 0.03.
#[test]
fn sift5k_matches_faiss_recall() {
    let Some(dir) = shared_data("sift5k-ngt") else {
        return;
    };
    let base = VectorFile::open(dir.join("sift5k_base.fvecs")).unwrap();
    let q = VectorFile::open(dir.join("sift5k_query.fvecs")).unwrap().read_all_f32().unwrap();
    let gt_raw = VectorFile::open(dir.join("sift5k_groundtruth.ivecs")).unwrap();
    let depth = gt_raw.dim();
    let gt: Vec<Vec<u64>> =
        gt_raw.read_all_i32().unwrap().chunks(depth).map(|r| r.iter().map(|&v| v as u64).collect()).collect();
    let out = tempfile::tempdir().unwrap();
    let o = quiver::BuildOptions { factory: "IVF64_HNSW32,PQ32".into(), ..Default::default() };
    quiver::build_index(&base, out.path(), &o, &quiver::NoProgress).unwrap();
    let index = Index::open(out.path()).unwrap();
    assert_recall_near_faiss("sift5k", &index, &q, &gt, &[(1, 0.407), (4, 0.705), (16, 0.828), (64, 0.833)], 0.03);
}

/// Real sentence embeddings (wordnet-minilm: unit-length MiniLM vectors, inner product), the
/// first 20,000 base vectors and 200 queries, ground truth recomputed by exact search on the
/// slice. faiss 1.15.1 at the same parameters, on the same slice written as fvecs
/// (`head -c $((20000*1540)) wordnet_minilm_base.fvecs > base.fvecs`, `head -c $((200*1540))
/// wordnet_minilm_query.fvecs > query.fvecs`, then in ../shared/bench
/// `python faiss_baseline.py --base base.fvecs --query query.fvecs --metric ip
///  --factory IVF256_HNSW32,PQ48 --nprobe 1,4,16,64 --train-size 20000`, exact ground truth by
/// IndexFlatIP) gave 10-recall@10 = 0.458 / 0.635 / 0.704 / 0.714. faiss's spread across seeds
/// is about ±0.01 and 200 queries add about ±0.02 of sampling noise: floor = faiss − 0.04.
#[test]
fn wordnet_slice_inner_product_matches_faiss_recall() {
    let Some(dir) = shared_data("wordnet-minilm") else { return };
    let (n, nq, d) = (20_000, 200, 384);
    let mut base = Vec::new();
    VectorFile::open(dir.join("wordnet_minilm_base.fvecs")).unwrap().read_f32(0, n, &mut base).unwrap();
    let mut q = Vec::new();
    VectorFile::open(dir.join("wordnet_minilm_query.fvecs")).unwrap().read_f32(0, nq, &mut q).unwrap();
    let gt = ground_truth(&base, &q, d, 10, Metric::InnerProduct);
    let out = tempfile::tempdir().unwrap();
    let o = quiver::BuildOptions {
        factory: "IVF256_HNSW32,PQ48".into(),
        metric: Metric::InnerProduct,
        ..Default::default()
    };
    build_slice(&base, d, out.path(), &o);
    let index = Index::open(out.path()).unwrap();
    assert_recall_near_faiss("wordnet-20k", &index, &q, &gt, &[(1, 0.458), (4, 0.635), (16, 0.704), (64, 0.714)], 0.04);
}

#[test]
fn index_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Index>();
}

/// Two-level k-means gives the recall of flat k-means (within 0.01 at nprobe 16 and 64) on
/// generated data, and a seeded build with it stays byte-identical.
#[test]
fn two_level_kmeans_matches_flat_recall() {
    let (d, n, nq) = (32, 60_000, 300);
    let (base, q) = synthetic(n, nq, d, 41);
    let gt = ground_truth(&base, &q, d, 10, Metric::L2);
    let mut recalls = Vec::new();
    for kind in [quiver::KMeansKind::Flat, quiver::KMeansKind::TwoLevel] {
        let dir = tempfile::tempdir().unwrap();
        let o = quiver::BuildOptions { kmeans: kind, ..opts("IVF256_HNSW16,PQ16", Metric::L2) };
        build_slice(&base, d, dir.path(), &o);
        let index = Index::open(dir.path()).unwrap();
        let r: Vec<f64> = [16, 64]
            .iter()
            .map(|&nprobe| {
                let res =
                    index.search(&q, &SearchParams { k: 10, nprobe, ef_search: 64, ..Default::default() }).unwrap();
                recall_at(&res.ids, 10, &gt, 10)
            })
            .collect();
        recalls.push(r);
    }
    for (i, nprobe) in [16, 64].iter().enumerate() {
        let (flat, two) = (recalls[0][i], recalls[1][i]);
        assert!(two >= flat - 0.01, "nprobe {nprobe}: two-level {two} vs flat {flat}");
    }
}

/// A merge in passes (fan-in forced to 2 over 12 runs: 12 → 6 → 3 → 2 → segments) writes the
/// same index, byte for byte, as one pass over all the runs.
#[test]
fn multi_pass_merge_is_byte_identical_to_one_pass() {
    let (d, n) = (16, 12_000);
    let (base, _) = synthetic(n, 0, d, 43);
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    for (dir, fan_in) in dirs.iter().zip([None, Some(2)]) {
        let o = quiver::BuildOptions { chunk_size: 1024, merge_fan_in: fan_in, ..opts("IVF32_HNSW8,PQ4", Metric::L2) };
        build_slice(&base, d, dir.path(), &o);
    }
    let names = |p: &std::path::Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(names(dirs[0].path()), names(dirs[1].path()), "no staging leftovers either");
    for name in names(dirs[0].path()) {
        let a = std::fs::read(dirs[0].path().join(&name)).unwrap();
        assert_eq!(a, std::fs::read(dirs[1].path().join(&name)).unwrap(), "{name}");
    }
}

/// A filtered search returns the k best allowed vectors of the probed lists: exactly what an
/// unfiltered search of every vector in those lists gives once the others are struck out (ids
/// and distances), for every IVF kind, L2 and inner product, one query at a time and in grouped
/// batches over cached lists; and k results where the lists hold k allowed ones. A graph index
/// refuses the filter.
#[test]
fn filtered_search_returns_the_best_allowed_vectors() {
    let (d, n, nq) = (16, 6_000, 30);
    let (base, queries) = synthetic(n, nq, d, 17);
    let allowed: Vec<u64> = (0..n as u64).filter(|i| i % 7 == 3 || i % 11 == 0).collect();
    let filter = std::sync::Arc::new(quiver::IdFilter::new(allowed.iter().copied()));
    for (factory, metric) in [
        ("IVF32_HNSW8,PQ8", Metric::L2),
        ("IVF32_HNSW8,PQ8x4fs", Metric::L2),
        ("IVF32_HNSW8,PQ8x4fsr", Metric::L2),
        ("IVF32_HNSW8,PQ8", Metric::InnerProduct),
        ("IVF32_HNSW8,Flat", Metric::L2),
    ] {
        let dir = tempfile::tempdir().unwrap();
        build_slice(&base, d, dir.path(), &opts(factory, metric));
        let index = Index::open(dir.path()).unwrap();
        let p = SearchParams { k: 10, nprobe: 4, ..Default::default() };
        let everything = index.search(&queries, &SearchParams { k: n, ..p.clone() }).unwrap();
        let filtered = SearchParams { filter: Some(filter.clone()), ..p.clone() };
        let got = index.search(&queries, &filtered).unwrap();
        for q in 0..nq {
            let want: Vec<(i64, f32)> = everything
                .ids_of(q)
                .iter()
                .zip(everything.distances_of(q))
                .filter(|(&id, _)| id >= 0 && filter.contains(id as u64))
                .take(10)
                .map(|(&id, &dist)| (id, dist))
                .collect();
            assert_eq!(want.len(), 10, "{factory}: the probed lists hold 10 allowed vectors");
            let have: Vec<(i64, f32)> =
                got.ids_of(q).iter().copied().zip(got.distances_of(q).iter().copied()).collect();
            assert_eq!(have, want, "{factory} {metric}: query {q}");
        }
        // Lists in RAM, and a grouped batch: the same answers.
        let o = OpenOptions { cache_bytes: 64 << 20, ..Default::default() };
        let cached = Index::open_with(dir.path(), o).unwrap();
        let s = Searcher::new(&cached, 1).unwrap();
        for _ in 0..2 {
            assert_eq!(s.search_grouped(&queries, &filtered).unwrap().results.ids, got.ids, "{factory}: grouped");
            assert_eq!(s.search(&queries, &filtered).unwrap().results.ids, got.ids, "{factory}: cached");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    build_slice(&base, d, dir.path(), &opts("HNSW8,Flat", Metric::L2));
    let graph = Index::open(dir.path()).unwrap();
    let e = graph.search(&queries, &SearchParams { filter: Some(filter), ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("filtered search is for IVF indexes"), "{e}");
}
