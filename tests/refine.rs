//! `,RFlat`: exact re-rank from full vectors kept on disk beside the codes (faiss's
//! `IndexRefineFlat` and its `k_factor`).

mod common;

use common::*;
use quiver::{Index, IoMode, Metric, OpenOptions, SearchParams, Searcher, VectorFile};

/// The exact dissimilarity the index ranks by (L2: squared; inner product: its negation).
fn exact(metric: Metric, q: &[f32], v: &[f32]) -> f32 {
    match metric {
        Metric::L2 => q.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum(),
        _ => -q.iter().zip(v).map(|(a, b)| a * b).sum::<f32>(),
    }
}

/// Re-ranked distances are the exact distances of the returned ids, results come closest first,
/// and recall is at least what the same codes give without re-rank — for 8-bit and fast-scan
/// codes, L2 and inner product, from the device and from a cache, one query at a time and
/// grouped.
#[test]
fn rerank_returns_exact_distances_and_beats_the_codes() {
    let (d, n, nq) = (32, 8_000, 60);
    let (base, queries) = synthetic(n, nq, d, 21);
    for metric in [Metric::L2, Metric::InnerProduct] {
        let gt = ground_truth(&base, &queries, d, 10, metric);
        for codes in ["PQ8", "PQ16x4fs", "PQ16x4fsr"] {
            let (plain, refined) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            build_slice(&base, d, plain.path(), &opts(&format!("IVF32_HNSW16,{codes}"), metric));
            build_slice(&base, d, refined.path(), &opts(&format!("IVF32_HNSW16,{codes},RFlat"), metric));
            let p = SearchParams { k: 10, nprobe: 8, ef_search: 16, k_factor: 8, ..Default::default() };
            let without = Index::open(plain.path())
                .unwrap()
                .search(&queries, &SearchParams { k_factor: 1, ..p.clone() })
                .unwrap();
            let mut first = None;
            for cache_bytes in [0, 64 << 20] {
                let index =
                    Index::open_with(refined.path(), OpenOptions { cache_bytes, ..Default::default() }).unwrap();
                assert_eq!(index.info().refine, Some(quiver::RefineVectors::Float32));
                let res = index.search(&queries, &p).unwrap();
                let what = format!("{codes} {metric:?} cache {cache_bytes}");
                for q in 0..nq {
                    let qv = &queries[q * d..(q + 1) * d];
                    let ids = res.ids_of(q);
                    let dist = res.distances_of(q);
                    for (&id, &got) in ids.iter().zip(dist) {
                        let want = exact(metric, qv, &base[id as usize * d..(id as usize + 1) * d]);
                        let user = if metric == Metric::L2 { want } else { -want };
                        assert!((got - user).abs() <= 1e-4 * user.abs().max(1.0), "{what}: id {id}: {got} vs {user}");
                    }
                    let order: Vec<f32> = dist.iter().map(|&x| if metric == Metric::L2 { x } else { -x }).collect();
                    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{what}: closest first");
                }
                let (r, r0) = (recall_at(&res.ids, 10, &gt, 10), recall_at(&without.ids, 10, &gt, 10));
                assert!(r >= r0 && r > 0.9, "{what}: recall {r} with re-rank, {r0} without");
                assert!(res.stats.refine_pages > 0 && res.stats.bytes_read >= res.stats.refine_pages * 4096);
                let grouped = Searcher::new(&index, 2).unwrap().search_grouped(&queries, &p).unwrap();
                assert_eq!(grouped.results.ids, res.ids, "{what}: grouped");
                assert_eq!(grouped.results.distances, res.distances, "{what}: grouped");
                match &first {
                    None => first = Some(res),
                    Some(f) => assert_eq!((&f.ids, &f.distances), (&res.ids, &res.distances), "{what}: cached"),
                }
            }
        }
    }
}

/// A re-rank reads the pages of its candidates and nothing else: one or two pages for one
/// candidate (a record of a 128-byte vector and its id may straddle a page), every page of
/// records — not the blocks of ids — when every vector is a candidate; the lists cost their
/// codes alone.
#[test]
fn rerank_reads_exactly_the_candidates_pages() {
    let (d, n) = (32, 3_000);
    let (base, queries) = synthetic(n, 1, d, 22);
    let dir = tempfile::tempdir().unwrap();
    build_slice(&base, d, dir.path(), &opts("IVF16_HNSW16,PQ8,RFlat", Metric::L2));
    let index = Index::open(dir.path()).unwrap();
    let one = index
        .search(&queries, &SearchParams { k: 1, nprobe: 4, ef_search: 16, k_factor: 1, ..Default::default() })
        .unwrap();
    assert!((1..=2).contains(&one.stats.refine_pages), "{}", one.stats.refine_pages);
    // Every vector a candidate: all the vectors file's data pages, each once.
    let all = index
        .search(&queries, &SearchParams { k: 100, nprobe: 16, ef_search: 16, k_factor: 30, ..Default::default() })
        .unwrap();
    let vec_len = std::fs::metadata(dir.path().join("vec-000000.qvv")).unwrap().len();
    let table = (4 * (vec_len / 4096)).div_ceil(4096) * 4096;
    let data_pages = (vec_len - 4096 - table) / 4096;
    let records: u64 = (0..16).map(|l| (index.list_len(l) * 136).div_ceil(4096)).sum();
    let blocks: u64 = (0..16).map(|l| (index.list_len(l) * 8).div_ceil(4096)).sum();
    assert_eq!(data_pages, records + blocks, "each extent's records, then its ids, from fresh pages");
    assert_eq!(all.stats.refine_pages, records);
    let seg_area = std::fs::metadata(segment_path(dir.path())).unwrap().len() - 4096;
    let codes: u64 = (0..16).map(|l| (index.list_len(l) * 8).div_ceil(4096) * 4096).sum();
    assert_eq!(seg_area, codes, "the extents hold the codes alone");
    assert_eq!(all.stats.bytes_read, seg_area + records * 4096, "the extents, then the candidates' pages");
}

/// Where the ids are kept with the vectors, the scan knows its candidates by place, and a
/// search that must pass over ids as it scans reads the blocks of ids first: an allow-list,
/// and deleted entries, give exactly the answers the ids in the lists gave — with every vector
/// a candidate, the exact top-k of what may be returned — and nothing it may not return;
/// allowing every id answers as no filter does, at the cost of the blocks (once, with a list
/// cache, which keeps them); `verify` checks each
/// record's id against its block, and a damaged block is a checksum error.
#[test]
fn ids_kept_with_the_vectors_serve_filters_and_deletions() {
    let (d, n, nq) = (32, 6_000, 25);
    let (base, queries) = synthetic(n, nq, d, 26);
    let dir = tempfile::tempdir().unwrap();
    build_slice(&base, d, dir.path(), &opts("IVF16_HNSW16,PQ16x4fs,RFlat", Metric::L2));
    let every = SearchParams { k: 10, nprobe: 16, ef_search: 16, k_factor: 1000, ..Default::default() };
    let some = SearchParams { k: 10, nprobe: 4, ef_search: 16, k_factor: 4, ..Default::default() };
    let exact_top = |allowed: &dyn Fn(u64) -> bool| -> Vec<Vec<u64>> {
        (0..nq)
            .map(|q| {
                let qv = &queries[q * d..(q + 1) * d];
                let mut all: Vec<(f32, u64)> = (0..n as u64)
                    .filter(|&i| allowed(i))
                    .map(|i| (exact(Metric::L2, qv, &base[i as usize * d..(i as usize + 1) * d]), i))
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                all.iter().take(10).map(|x| x.1).collect()
            })
            .collect()
    };
    let ids = |r: &quiver::SearchResults| -> Vec<Vec<u64>> {
        (0..nq).map(|q| r.ids_of(q).iter().map(|&i| i as u64).collect()).collect()
    };
    for cache_bytes in [0, 64 << 20] {
        let index = Index::open_with(dir.path(), OpenOptions { cache_bytes, ..Default::default() }).unwrap();
        assert_eq!(ids(&index.search(&queries, &every).unwrap()), exact_top(&|_| true), "cache {cache_bytes}");
        let even = std::sync::Arc::new(quiver::IdFilter::new((0..n as u64).step_by(2)));
        let got = index.search(&queries, &SearchParams { filter: Some(even.clone()), ..every.clone() }).unwrap();
        assert_eq!(ids(&got), exact_top(&|i| i % 2 == 0), "cache {cache_bytes}: even ids");
        let got = index.search(&queries, &SearchParams { filter: Some(even), ..some.clone() }).unwrap();
        assert!(got.ids.iter().all(|&i| i >= 0 && i % 2 == 0), "cache {cache_bytes}: {:?}", got.ids);
        let plain = index.search(&queries, &some).unwrap();
        let anything = std::sync::Arc::new(quiver::IdFilter::new(0..n as u64));
        let filtered = SearchParams { filter: Some(anything), ..some.clone() };
        let allowed = index.search(&queries, &filtered).unwrap();
        assert_eq!((&allowed.ids, &allowed.distances), (&plain.ids, &plain.distances), "cache {cache_bytes}");
        if cache_bytes == 0 {
            assert!(allowed.stats.bytes_read > plain.stats.bytes_read, "the blocks of ids are read");
        } else {
            // The cache kept the blocks the filtered searches above read: this one reads what
            // the unfiltered one does (the re-rank's pages).
            let plain_again = index.search(&queries, &some).unwrap();
            assert_eq!(allowed.stats.bytes_read, plain_again.stats.bytes_read, "blocks of ids from the cache");
        }
        let grouped = Searcher::new(&index, 2).unwrap().search_grouped(&queries, &some).unwrap();
        assert_eq!(grouped.results.ids, plain.ids, "cache {cache_bytes}: grouped");
    }
    let gone: Vec<i64> = (0..n as i64).filter(|i| i % 3 == 0).collect();
    quiver::delete_ids(dir.path(), &gone).unwrap();
    let index = Index::open(dir.path()).unwrap();
    assert_eq!(ids(&index.search(&queries, &every).unwrap()), exact_top(&|i| i % 3 != 0), "after deletes");
    let got = index.search(&queries, &some).unwrap();
    assert!(got.ids.iter().all(|&i| i >= 0 && i % 3 != 0), "{:?}", got.ids);
    let grouped = Searcher::new(&index, 2).unwrap().search_grouped(&queries, &some).unwrap();
    assert_eq!(grouped.results.ids, got.ids, "grouped, after deletes");
    assert!(quiver::verify_index(dir.path()).unwrap().is_ok());
    quiver::compact(dir.path(), &quiver::ChangeOptions::default()).unwrap();
    let v = quiver::verify_index(dir.path()).unwrap();
    assert!(v.is_ok(), "{:?}", v.faults);
    let index = Index::open(dir.path()).unwrap();
    assert_eq!(ids(&index.search(&queries, &every).unwrap()), exact_top(&|i| i % 3 != 0), "after compaction");
    assert_eq!(index.search(&queries, &some).unwrap().ids, got.ids, "after compaction");
    // A damaged block of ids: an allow-list reads it and fails on its checksum; verify says so.
    // The compaction wrote every list, in order, into one new segment: the first non-empty
    // list's block of ids follows its records there.
    let first = (0..16).find(|&l| index.list_len(l) > 0).unwrap();
    let records = (index.list_len(first) * 136).div_ceil(4096);
    drop(index);
    let vec = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("vec-"))
        .unwrap();
    flip_byte(&vec, 4096 * (1 + records) + 3);
    let v = quiver::verify_index(dir.path()).unwrap();
    assert!(!v.is_ok(), "verify misses a damaged block of ids");
    let index = Index::open(dir.path()).unwrap();
    let anything = std::sync::Arc::new(quiver::IdFilter::new(0..n as u64));
    let e = index.search(&queries, &SearchParams { filter: Some(anything), ..every }).unwrap_err().to_string();
    assert!(e.contains("checksum") && e.contains("vec-"), "{e}");
}

/// A vectors file whose records disagree with the list directory about where the ids are (a
/// directory rewritten to say "in the lists" over records that carry them) is refused at open,
/// naming the file, before any search reads it.
#[test]
fn a_vectors_file_must_agree_with_the_directory_on_the_ids() {
    use quiver::format::{decode_file, CodeLayout, Directory, FileEntry, FileKind, IdsPlace, Manifest};
    let (d, n) = (16, 800);
    let (base, _) = synthetic(n, 1, d, 27);
    let dir = tempfile::tempdir().unwrap();
    build_slice(&base, d, dir.path(), &opts("IVF8_HNSW8,PQ8,RFlat", Metric::L2));
    assert!(Index::open(dir.path()).unwrap().ids_with_vectors());
    // 8 lists of about 100 vectors: codes and ids would fit the same one page an extent has, so
    // the rewritten directory is well formed in itself.
    let lists = dir.path().join("lists.qvd");
    let (mut directory, _) =
        Directory::decode("lists.qvd", &std::fs::read(&lists).unwrap(), CodeLayout::RowMajor { code_size: 8 }).unwrap();
    directory.ids = IdsPlace::InExtent;
    let mpath = dir.path().join("MANIFEST-000001");
    let mut manifest = Manifest::decode("m", &std::fs::read(&mpath).unwrap()).unwrap();
    let bytes = directory.encode(manifest.index_id);
    let (h, _) = decode_file("lists.qvd", FileKind::Directory, &bytes).unwrap();
    for f in manifest.files.iter_mut().filter(|f| f.name() == "lists.qvd") {
        *f = FileEntry::new("lists.qvd", FileKind::Directory, bytes.len() as u64, h.payload_crc.get())
            .written_by(f.generation() as u64);
    }
    std::fs::write(&lists, &bytes).unwrap();
    std::fs::write(&mpath, manifest.encode()).unwrap();
    let e = Index::open(dir.path()).err().expect("refused").to_string();
    assert!(e.contains("vec-000000.qvv") && e.contains("ids"), "{e}");
    assert!(!quiver::verify_index(dir.path()).unwrap().is_ok());
}

/// uint8 input keeps uint8 vectors (a quarter of float32's bytes) and ranks by the exact
/// distance of its byte values.
#[test]
fn uint8_input_keeps_bytes() {
    let Some(data) = shared_data("sift5k-ngt") else {
        eprintln!("skipped: ../shared/data/sift5k-ngt is not here");
        return;
    };
    let base = VectorFile::open(data.join("sift5k_base.bvecs")).unwrap();
    let queries = VectorFile::open(data.join("sift5k_query.fvecs")).unwrap().read_all_f32().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let o = opts("IVF32_HNSW16,PQ16,RFlat", Metric::L2);
    quiver::build_index(&base, dir.path(), &o, &quiver::NoProgress).unwrap();
    assert!(quiver::verify_index(dir.path()).unwrap().is_ok());
    let index = Index::open(dir.path()).unwrap();
    assert_eq!(index.info().refine, Some(quiver::RefineVectors::Uint8));
    let vec_len = std::fs::metadata(dir.path().join("vec-000000.qvv")).unwrap().len();
    // A byte per value, and each vector's id twice (in its record and its extent's block).
    assert!(vec_len < 5000 * (128 + 16) + 80 * 4096, "{vec_len} bytes: one byte per value");
    let base_f = base.read_all_f32().unwrap();
    let q = &queries[..128];
    let res =
        index.search(q, &SearchParams { k: 5, nprobe: 32, ef_search: 32, k_factor: 10, ..Default::default() }).unwrap();
    for (&id, &got) in res.ids.iter().zip(&res.distances) {
        let want = exact(Metric::L2, q, &base_f[id as usize * 128..(id as usize + 1) * 128]);
        assert!((got - want).abs() <= 1e-3 * want.max(1.0), "id {id}: {got} vs {want}");
    }
}

/// k_factor 0 or past the limit, and a re-rank asked of an index without full vectors, are
/// clear errors before any work.
#[test]
fn k_factor_errors() {
    let (d, n) = (16, 2_000);
    let (base, queries) = synthetic(n, 2, d, 23);
    let (plain, refined) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    build_slice(&base, d, plain.path(), &opts("IVF8_HNSW8,PQ8", Metric::L2));
    build_slice(&base, d, refined.path(), &opts("IVF8_HNSW8,PQ8,RFlat", Metric::L2));
    let p = SearchParams { k: 5, nprobe: 4, ef_search: 16, k_factor: 1, ..Default::default() };
    let plain = Index::open(plain.path()).unwrap();
    let refined = Index::open(refined.path()).unwrap();
    assert!(plain.search(&queries, &p).is_ok(), "k_factor 1 is every index's default");
    let e = plain.search(&queries, &SearchParams { k_factor: 4, ..p.clone() }).unwrap_err().to_string();
    assert!(e.contains("keeps no full vectors") && e.contains(",RFlat"), "{e}");
    for bad in [0, quiver::MAX_K_FACTOR + 1] {
        let e = refined.search(&queries, &SearchParams { k_factor: bad, ..p.clone() }).unwrap_err().to_string();
        assert!(e.contains("k_factor"), "{e}");
    }
    for s in ["IVF8_HNSW8,Flat,RFlat", "HNSW8_PQ4,RFlat"] {
        let e = quiver::build_index(
            &quiver::SliceSource { data: &base, dim: d },
            &tempfile::tempdir().unwrap().path().join("x"),
            &opts(s, Metric::L2),
            &quiver::NoProgress,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("RFlat"), "{s}: {e}");
    }
}

/// A damaged page of vectors is a checksum error naming the file and page when a query reads
/// it, and a `verify` fault; a vectors file cut short fails the open.
#[test]
fn damaged_vectors_are_caught() {
    let (d, n) = (32, 3_000);
    let (base, queries) = synthetic(n, 4, d, 24);
    let dir = tempfile::tempdir().unwrap();
    build_slice(&base, d, dir.path(), &opts("IVF16_HNSW16,PQ8,RFlat", Metric::L2));
    let vec = dir.path().join("vec-000000.qvv");
    flip_byte(&vec, 4096 * 3 + 100);
    let index = Index::open(dir.path()).unwrap();
    let all = SearchParams { k: 100, nprobe: 16, ef_search: 16, k_factor: 30, ..Default::default() };
    let e = index.search(&queries, &all).unwrap_err().to_string();
    assert!(e.contains("vec-000000.qvv") && e.contains("vectors page 2") && e.contains("checksum"), "{e}");
    let v = quiver::verify_index(dir.path()).unwrap();
    assert!(!v.is_ok() && v.faults.iter().any(|f| f.file == "vec-000000.qvv"), "{:?}", v.faults);
    let len = std::fs::metadata(&vec).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&vec).unwrap().set_len(len - 4096).unwrap();
    let e = Index::open(dir.path()).err().expect("a short vectors file fails the open").to_string();
    assert!(e.contains("vec-000000.qvv"), "{e}");
}

/// The executor that keeps several queries in flight per thread answers exactly as one query
/// at a time does, for any number in flight, with and without re-rank, cache, an allow-list
/// (whose blocks of ids an index that keeps them with its vectors reads first) and io_uring;
/// and each query's own stats are those of the same query searched alone.
#[test]
fn queries_in_flight_answer_as_one_at_a_time() {
    let (d, n, nq) = (32, 6_000, 37);
    let (base, queries) = synthetic(n, nq, d, 25);
    let even = std::sync::Arc::new(quiver::IdFilter::new((0..n as u64).step_by(2)));
    for factory in ["IVF16_HNSW16,PQ16x4fs,RFlat", "IVF16_HNSW16,PQ8"] {
        let dir = tempfile::tempdir().unwrap();
        build_slice(&base, d, dir.path(), &opts(factory, Metric::L2));
        for (cache_bytes, io) in [(0, IoMode::Auto), (64 << 20, IoMode::Auto), (0, IoMode::Pread)] {
            let index = Index::open_with(dir.path(), OpenOptions { cache_bytes, io, ..Default::default() }).unwrap();
            let k_factor = if factory.ends_with("RFlat") { 4 } else { 1 };
            for filter in [None, Some(even.clone())] {
                let p = SearchParams { k: 10, nprobe: 6, ef_search: 16, k_factor, filter, ..Default::default() };
                let one = Searcher::new(&index, 1).unwrap().search(&queries, &p).unwrap();
                for (threads, inflight) in [(1, 2), (1, 7), (2, 5), (1, 64)] {
                    let s = Searcher::new(&index, threads).unwrap().with_inflight(inflight).unwrap();
                    let b = s.search(&queries, &p).unwrap();
                    let what = format!(
                        "{factory} cache {cache_bytes} {io:?} filter {} threads {threads} inflight {inflight}",
                        p.filter.is_some()
                    );
                    assert_eq!(b.results.ids, one.results.ids, "{what}");
                    assert_eq!(b.results.distances, one.results.distances, "{what}");
                    assert_eq!(b.latencies_ms.len(), nq);
                    assert_eq!(b.per_query.iter().map(|s| s.bytes_read).sum::<u64>(), b.results.stats.bytes_read);
                    if cache_bytes == 0 {
                        let cost = |s: &quiver::SearchStats| (s.bytes_read, s.reads, s.extents_read, s.refine_pages);
                        for (i, (got, alone)) in b.per_query.iter().zip(&one.per_query).enumerate() {
                            assert_eq!(cost(got), cost(alone), "{what}: query {i}");
                            assert!(got.reads > 0, "{what}: query {i} read nothing");
                        }
                    }
                }
            }
        }
        let index = Index::open(dir.path()).unwrap();
        for bad in [0, quiver::MAX_INFLIGHT + 1] {
            let e = Searcher::new(&index, 1).unwrap().with_inflight(bad).err().expect("refused").to_string();
            assert!(e.contains("inflight"), "{e}");
        }
    }
}
