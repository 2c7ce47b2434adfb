//! `HNSW{M},Flat` and `HNSW{M}_PQ{m}` end to end: against brute force for every metric, mapped
//! and in-RAM opens alike, seeded builds byte for byte the same, damage caught (by `verify`, by
//! an in-RAM open, and never a panic from a mapped one), and bad parameters refused before any
//! work.

mod common;

use common::{build_slice, flip_byte, ground_truth, opts, recall_at, synthetic};
use quiver::{build_index, Error, Index, Metric, NoProgress, OpenOptions, SearchParams, SliceSource};

const D: usize = 24;

fn params(k: usize, ef: usize) -> SearchParams {
    SearchParams { k, ef_search: ef, ..Default::default() }
}

fn open_ram(dir: &std::path::Path) -> quiver::Result<Index> {
    Index::open_with(dir, OpenOptions { load_into_ram: true, ..Default::default() })
}

/// Every query's exact 10 nearest, with their distances.
fn exact_top10(base: &[f32], queries: &[f32], metric: Metric) -> Vec<Vec<quiver::topk::Neighbor>> {
    let mut e = quiver::ExactKnn::new(queries, D, 10, metric);
    e.add(base, 0);
    e.finish()
}

/// Recall against brute force grows with efSearch and is high at a wide search; returned
/// distances are the exact distances of the returned ids (the vectors are searched raw).
#[test]
fn hnsw_flat_finds_what_brute_force_finds() {
    let (base, queries) = synthetic(3000, 100, D, 3);
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        let dir = tempfile::tempdir().unwrap();
        build_slice(&base, D, dir.path(), &opts("HNSW16,Flat", metric));
        let index = Index::open(dir.path()).unwrap();
        assert!(index.info().is_graph());
        let gt = ground_truth(&base, &queries, D, 10, metric);
        let exact = exact_top10(&base, &queries, metric);
        let mut last = 0.0;
        for ef in [10, 40, 160] {
            let res = index.search(&queries, &params(10, ef)).unwrap();
            let r = recall_at(&res.ids, 10, &gt, 10);
            assert!(r >= last - 0.01, "{metric}: recall {r} at ef {ef} fell below {last}");
            last = r;
            if ef == 160 {
                assert!(r >= 0.97, "{metric}: recall@10 {r} at ef 160");
                for (q, truth) in exact.iter().enumerate() {
                    let (ids, dists) = (res.ids_of(q), res.distances_of(q));
                    for (&id, &dist) in ids.iter().zip(dists) {
                        if let Some(t) = truth.iter().find(|n| n.id as i64 == id) {
                            let want = metric.to_user_distance(t.dist);
                            assert!((dist - want).abs() <= 1e-4 * want.abs().max(1.0), "{metric}: {dist} vs {want}");
                        }
                    }
                }
            }
        }
        assert_eq!(res_len(&index, &queries), queries.len() / D * 10);
    }
}

fn res_len(index: &Index, queries: &[f32]) -> usize {
    index.search(queries, &params(10, 16)).unwrap().ids.len()
}

/// `HNSW{M}_PQ{m}` walks the graph with PQ distances from codes in RAM: recall grows with
/// efSearch up to what the codes allow (no more than an exhaustive scan of the same codes,
/// which `IVF1_HNSW…` with every list probed is), its distances are the codes' ADC, and
/// damage to the codes or codebooks is caught.
#[test]
fn hnsw_pq_walks_with_the_codes() {
    let (base, queries) = synthetic(3000, 100, D, 3);
    for metric in [Metric::L2, Metric::InnerProduct] {
        let dir = tempfile::tempdir().unwrap();
        build_slice(&base, D, dir.path(), &opts("HNSW16_PQ8", metric));
        let index = Index::open(dir.path()).unwrap();
        assert_eq!((index.info().pq_m, index.info().nlist), (8, 0));
        let gt = ground_truth(&base, &queries, D, 10, metric);
        let (narrow, wide) =
            (index.search(&queries, &params(10, 10)).unwrap(), index.search(&queries, &params(10, 200)).unwrap());
        let (rn, rw) = (recall_at(&narrow.ids, 10, &gt, 10), recall_at(&wide.ids, 10, &gt, 10));
        assert!(rw >= rn - 0.01 && rw > 0.4, "{metric}: recall {rn} at ef 10, {rw} at ef 200");
        let ram = open_ram(dir.path()).unwrap();
        assert_eq!(ram.search(&queries, &params(10, 200)).unwrap().ids, wide.ids, "{metric}: mapped vs RAM");
        // Each distance is the query's to the code's reconstruction (ADC), decoded here from the
        // files as format-spec/11-graph.md lays them out.
        let (cb, _) =
            quiver::format::Codebooks::decode("c", &std::fs::read(dir.path().join("codebooks.qvc")).unwrap()).unwrap();
        let codes = std::fs::read(dir.path().join("codes.qvv")).unwrap();
        let dsub = D / 8;
        for q in 0..5 {
            let qv = &queries[q * D..(q + 1) * D];
            for (&id, &got) in wide.ids_of(q).iter().zip(wide.distances_of(q)) {
                let code = &codes[4096 + id as usize * 8..4096 + id as usize * 8 + 8];
                let recon: Vec<f32> = (0..D)
                    .map(|t| cb.centroids[((t / dsub) * 256 + code[t / dsub] as usize) * dsub + t % dsub])
                    .collect();
                let want = match metric {
                    Metric::L2 => qv.iter().zip(&recon).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
                    _ => qv.iter().zip(&recon).map(|(a, b)| a * b).sum::<f32>(),
                };
                assert!(
                    (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                    "{metric}: query {q} id {id}: {got} vs {want}"
                );
            }
        }
        for (file, offset) in [("codes.qvv", 4096 + 10), ("codebooks.qvc", 200)] {
            let bad = tempfile::tempdir().unwrap();
            for f in ["MANIFEST-000001", "graph.qvg", "codes.qvv", "codebooks.qvc"] {
                std::fs::copy(dir.path().join(f), bad.path().join(f)).unwrap();
            }
            flip_byte(&bad.path().join(file), offset);
            let r = quiver::verify_index(bad.path()).unwrap();
            assert!(r.faults.iter().any(|f| f.file == file), "{file}: {:?}", r.faults);
            assert!(Index::open(bad.path()).is_err(), "{file}: codes and codebooks are read and checked at open");
        }
    }
}

/// A mapped open and an open into RAM answer byte for byte alike, and so does a searcher.
#[test]
fn mapped_and_in_ram_answer_alike() {
    let (base, queries) = synthetic(2000, 50, D, 5);
    let dir = tempfile::tempdir().unwrap();
    build_slice(&base, D, dir.path(), &opts("HNSW8,Flat", Metric::L2));
    let mapped = Index::open(dir.path()).unwrap();
    let ram = open_ram(dir.path()).unwrap();
    for ef in [4, 16, 64] {
        let p = params(7, ef);
        let (a, b) = (mapped.search(&queries, &p).unwrap(), ram.search(&queries, &p).unwrap());
        assert_eq!((&a.ids, &a.distances), (&b.ids, &b.distances), "ef {ef}");
        let s = quiver::Searcher::new(&mapped, 2).unwrap().with_inflight(4).unwrap();
        let c = s.search(&queries, &p).unwrap();
        assert_eq!(c.results.ids, a.ids);
        assert_eq!(c.latencies_ms.len(), queries.len() / D);
        assert_eq!(s.search_grouped(&queries, &p).unwrap().results.ids, a.ids);
    }
}

/// The same seed gives the same files, whatever the thread count.
#[test]
fn seeded_builds_are_identical() {
    let (base, _) = synthetic(1500, 1, D, 9);
    let read_all = |dir: &std::path::Path| -> Vec<(String, Vec<u8>)> {
        // The index's files: the writers' lock file beside them is no part of it.
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name() != quiver::store::LOCK)
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
            .collect();
        v.sort();
        v
    };
    let dirs: Vec<_> = [1, 2]
        .iter()
        .map(|&t| {
            let dir = tempfile::tempdir().unwrap();
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            pool.install(|| build_slice(&base, D, dir.path(), &opts("HNSW12,Flat", Metric::L2)));
            dir
        })
        .collect();
    let (a, b) = (read_all(dirs[0].path()), read_all(dirs[1].path()));
    assert_eq!(a.iter().map(|f| &f.0).collect::<Vec<_>>(), ["MANIFEST-000001", "graph.qvg", "vectors.qvv"]);
    assert!(a == b, "builds on 1 and 2 threads differ");
}

/// A flipped byte anywhere in either file is a `verify` fault naming the file, and an open
/// into RAM refuses it; a mapped open of damaged slots still answers without a panic (ids out
/// of range end a node's list).
#[test]
fn damage_is_caught() {
    let (base, queries) = synthetic(1200, 10, D, 11);
    let src = tempfile::tempdir().unwrap();
    build_slice(&base, D, src.path(), &opts("HNSW8,Flat", Metric::L2));
    let copy = |to: &std::path::Path| {
        for f in ["MANIFEST-000001", "graph.qvg", "vectors.qvv"] {
            std::fs::copy(src.path().join(f), to.join(f)).unwrap();
        }
    };
    // (file, offset): header page, a slot, a level, the page table; a vector.
    let graph_len = std::fs::metadata(src.path().join("graph.qvg")).unwrap().len();
    for (file, offset) in [
        ("graph.qvg", 70),
        ("graph.qvg", 4096 + 40),
        ("graph.qvg", graph_len - 4096 + 2),
        ("vectors.qvv", 4096 + 1000),
        ("vectors.qvv", 80),
    ] {
        let dir = tempfile::tempdir().unwrap();
        copy(dir.path());
        flip_byte(&dir.path().join(file), offset);
        let r = quiver::verify_index(dir.path()).unwrap();
        assert!(!r.is_ok(), "{file}@{offset}: verify found nothing");
        assert!(r.faults.iter().any(|f| f.file == file), "{file}@{offset}: {:?}", r.faults);
        assert!(open_ram(dir.path()).is_err(), "{file}@{offset}: an open into RAM took it");
        if let Ok(index) = Index::open(dir.path()) {
            index.search(&queries, &params(5, 32)).unwrap();
        }
    }
    // Every slot of node 0 pointing far past the graph: the mapped walk skips them.
    let dir = tempfile::tempdir().unwrap();
    copy(dir.path());
    let path = dir.path().join("graph.qvg");
    let mut bytes = std::fs::read(&path).unwrap();
    for s in 0..16 {
        bytes[4096 + 4 * s..4096 + 4 * s + 4].copy_from_slice(&5_000_000u32.to_le_bytes());
    }
    std::fs::write(&path, &bytes).unwrap();
    let index = Index::open(dir.path()).unwrap();
    index.search(&queries, &params(5, 32)).unwrap();
    let e = open_ram(dir.path()).err().unwrap().to_string();
    assert!(e.contains("graph"), "{e}");
    // A file cut short is refused by every open.
    let dir = tempfile::tempdir().unwrap();
    copy(dir.path());
    let f = std::fs::OpenOptions::new().write(true).open(dir.path().join("vectors.qvv")).unwrap();
    f.set_len(5000).unwrap();
    assert!(Index::open(dir.path()).is_err() && open_ram(dir.path()).is_err());
}

/// Parameters that do not apply to a graph, a graph M below 2 and a budget the graph does not
/// fit are refused with a message, before anything is written.
#[test]
fn bad_parameters_are_refused() {
    let (base, queries) = synthetic(500, 2, D, 13);
    let dir = tempfile::tempdir().unwrap();
    build_slice(&base, D, dir.path(), &opts("HNSW8,Flat", Metric::L2));
    let index = Index::open(dir.path()).unwrap();
    let e = index.search(&queries, &SearchParams { nprobe: 4, ..params(5, 16) }).unwrap_err().to_string();
    assert!(e.contains("nprobe") && e.contains("efSearch"), "{e}");
    let e = index.search(&queries, &SearchParams { k_factor: 2, ..params(5, 16) }).unwrap_err().to_string();
    assert!(e.contains("k_factor"), "{e}");
    let e = index
        .search(&queries, &SearchParams { coarse: quiver::CoarseSearch::Exact, ..params(5, 16) })
        .unwrap_err()
        .to_string();
    assert!(e.contains("coarse = exact") && e.contains("IVF"), "{e}");
    assert!(index.search(&queries, &params(5, 0)).is_err());
    assert!(index.search(&queries, &params(501, 16)).is_err());
    // k above efSearch still gives k results.
    let r = index.search(&queries, &params(50, 8)).unwrap();
    assert!(r.ids.iter().all(|&i| i >= 0));

    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("idx");
    let src = SliceSource { data: &base, dim: D };
    let e = build_index(&src, &out, &opts("HNSW1,Flat", Metric::L2), &NoProgress).unwrap_err().to_string();
    assert!(e.contains("HNSW M 1"), "{e}");
    let small = quiver::BuildOptions { memory_budget: Some(1 << 20), ..opts("HNSW8,Flat", Metric::L2) };
    assert!(matches!(build_index(&src, &out, &small, &NoProgress), Err(Error::BudgetTooSmall { .. })));
    let empty = SliceSource { data: &[], dim: D };
    assert!(build_index(&empty, &out, &opts("HNSW8,Flat", Metric::L2), &NoProgress).is_err());
    assert!(!out.exists(), "nothing may be created");
}

/// `IVF{n}_HNSW{M},Flat` keeps the vectors themselves in its lists: with every list probed it
/// answers exactly as brute force does (ids and distances), fewer lists answer with exact
/// distances for what they hold, and cached lists answer as read ones; no codebooks are
/// written, and `verify` passes.
#[test]
fn ivf_flat_is_exact_over_the_lists_it_probes() {
    let (base, queries) = synthetic(3000, 50, D, 21);
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        let dir = tempfile::tempdir().unwrap();
        build_slice(&base, D, dir.path(), &opts("IVF16_HNSW8,Flat", metric));
        assert!(!dir.path().join("codebooks.qvc").exists());
        let index = Index::open(dir.path()).unwrap();
        assert_eq!((index.info().nlist, index.info().pq_m), (16, 0));
        let exact = exact_top10(&base, &queries, metric);
        let all = index.search(&queries, &SearchParams { k: 10, nprobe: 16, ..Default::default() }).unwrap();
        for (q, truth) in exact.iter().enumerate() {
            let want: Vec<i64> = truth.iter().map(|n| n.id as i64).collect();
            assert_eq!(all.ids_of(q), &want[..], "{metric}: query {q}");
            for (got, n) in all.distances_of(q).iter().zip(truth) {
                let want = metric.to_user_distance(n.dist);
                assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{metric}: {got} vs {want}");
            }
        }
        let few = SearchParams { k: 10, nprobe: 4, ..Default::default() };
        let read = index.search(&queries, &few).unwrap();
        let cached = Index::open_with(
            dir.path(),
            OpenOptions { cache_bytes: 64 << 20, cache_preload: true, ..Default::default() },
        )
        .unwrap();
        let warm = cached.search(&queries, &few).unwrap();
        assert_eq!((&read.ids, &read.distances), (&warm.ids, &warm.distances), "{metric}: cached vs read");
        assert_eq!(warm.stats.bytes_read, 0);
        let gt = ground_truth(&base, &queries, D, 10, metric);
        assert!(recall_at(&read.ids, 10, &gt, 10) > 0.5, "{metric}: nprobe 4 of 16");
    }
}
