//! Old files open forever. `fixtures/v1/l2-ivf8-pq4` is a format-1.0 index checked in when
//! format 1.0 was current; every later quiver must open it, verify it and answer these queries
//! with these neighbours. Regenerate only on purpose, never to make this test pass:
//!   quiver gen --n 2000 --dim 8 --seed 5 --out base.fvecs
//!   quiver gen --n 5 --dim 8 --seed 5 --first-row 2000 --out queries.fvecs
//!   quiver build --input base.fvecs --index l2-ivf8-pq4 --factory IVF8_HNSW8,PQ4 --seed 3
//!   quiver search --index l2-ivf8-pq4 --queries queries.fvecs --k 3 --nprobe 2 --out ids.ivecs --out-distances d.fvecs

use std::path::Path;

use quiver::{Index, Metric, SearchParams, VectorFile};

const IDS: [[i64; 3]; 5] =
    [[1596, 1416, 1982], [1423, 1999, 834], [1691, 65, 1553], [168, 782, 304], [127, 1507, 1862]];
const DISTANCES: [[f32; 3]; 5] = [
    [1.099998, 1.139973, 1.154075],
    [0.727797, 0.982225, 1.003748],
    [1.080423, 1.094514, 1.314959],
    [0.407350, 0.829021, 0.905715],
    [0.357046, 0.761598, 0.806533],
];

#[test]
fn v1_fixture_opens_verifies_and_answers_as_it_did() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    let index = Index::open(dir.join("l2-ivf8-pq4")).unwrap();
    let info = index.info();
    assert_eq!(
        (info.factory.as_str(), info.dim, info.metric, info.ntotal, info.generation),
        ("IVF8_HNSW8,PQ4", 8, Metric::L2, 2000, 1)
    );
    assert_eq!(index.verify().unwrap().vectors, 2000);
    let q = VectorFile::open(dir.join("queries.fvecs")).unwrap().read_all_f32().unwrap();
    let res = index.search(&q, &SearchParams { k: 3, nprobe: 2, ef_search: 16, ..Default::default() }).unwrap();
    for (i, (ids, dists)) in IDS.iter().zip(DISTANCES).enumerate() {
        assert_eq!(res.ids_of(i), ids, "query {i}");
        for (got, want) in res.distances_of(i).iter().zip(dists) {
            assert!((got - want).abs() < 1e-4, "query {i}: distance {got} vs {want}");
        }
    }
}

/// Format 1.1 fixtures, checked in when 1.1 was current: 4-bit fast-scan codes (layout 2) of
/// the vectors themselves (L2) and of their residuals (inner product), built from the same
/// base as the 1.0 fixture and answering its queries. Made with:
///   quiver build --input base.fvecs --index l2-ivf8-pq8x4fs --factory IVF8_HNSW8,PQ8x4fs --seed 3
///   quiver build --input base.fvecs --index ip-ivf8-pq4x4fsr --factory IVF8_HNSW8,PQ4x4fsr --metric ip --seed 3
///   quiver search --index … --queries ../v1/queries.fvecs --k 3 --nprobe 2 --out ids.ivecs --out-distances d.fvecs
#[test]
fn v1_1_fast_scan_fixtures_open_verify_and_answer_as_they_did() {
    type Answers = ([[i64; 3]; 5], [[f32; 3]; 5]);
    let cases: [(&str, &str, Metric, bool, Answers); 2] = [
        (
            "l2-ivf8-pq8x4fs",
            "IVF8_HNSW8,PQ8x4fs",
            Metric::L2,
            false,
            (
                [[1416, 247, 1982], [1423, 1999, 215], [1691, 65, 1553], [168, 782, 304], [127, 1507, 1862]],
                [
                    [1.005007, 1.049258, 1.069512],
                    [0.561283, 0.878925, 1.05689],
                    [1.01402, 1.159549, 1.462478],
                    [0.378092, 0.808327, 0.834335],
                    [0.35426, 0.78226, 0.903657],
                ],
            ),
        ),
        (
            "ip-ivf8-pq4x4fsr",
            "IVF8_HNSW8,PQ4x4fsr",
            Metric::InnerProduct,
            true,
            (
                [[331, 962, 481], [1730, 844, 1799], [65, 1691, 1553], [782, 364, 1972], [1460, 699, 510]],
                [
                    [4.136681, 4.113845, 4.074301],
                    [2.753729, 2.752826, 2.640154],
                    [4.433153, 4.137627, 3.96499],
                    [4.524413, 4.382304, 4.240754],
                    [2.767014, 2.730654, 2.707],
                ],
            ),
        ),
    ];
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let q = VectorFile::open(fixtures.join("v1/queries.fvecs")).unwrap().read_all_f32().unwrap();
    for (name, factory, metric, residual, (ids, distances)) in cases {
        let index = Index::open(fixtures.join("v1_1").join(name)).unwrap();
        let info = index.info();
        assert_eq!(
            (info.factory.as_str(), info.metric, info.pq_nbits, info.by_residual, info.ntotal),
            (factory, metric, 4, residual, 2000)
        );
        assert_eq!(index.verify().unwrap().vectors, 2000, "{name}");
        let res = index.search(&q, &SearchParams { k: 3, nprobe: 2, ef_search: 16, ..Default::default() }).unwrap();
        for (i, (want_ids, want_d)) in ids.iter().zip(distances).enumerate() {
            assert_eq!(res.ids_of(i), want_ids, "{name} query {i}");
            for (got, want) in res.distances_of(i).iter().zip(want_d) {
                assert!((got - want).abs() < 1e-4, "{name} query {i}: distance {got} vs {want}");
            }
        }
    }
}

/// What the `,RFlat` fixtures (1.2 and 1.5: the same base, build and queries) answer:
/// `--nprobe 2 --k-factor 4`, and the exact answer (every vector a candidate).
const RFLAT_IDS: [[i64; 3]; 5] =
    [[1416, 1596, 1982], [1423, 1999, 834], [1691, 65, 1553], [168, 782, 304], [127, 1507, 1862]];
const RFLAT_DISTANCES: [[f32; 3]; 5] = [
    [1.069432, 1.116637, 1.141394],
    [0.669792, 0.925631, 1.037175],
    [1.1005, 1.148062, 1.401672],
    [0.430399, 0.694025, 0.812399],
    [0.401735, 0.758815, 0.836647],
];
const RFLAT_EXACT: [[i64; 3]; 5] =
    [[1416, 1257, 1596], [1423, 1999, 834], [1691, 65, 1553], [168, 782, 304], [127, 1507, 1862]];

/// Format 1.2 fixture, checked in when 1.2 was current: full vectors for re-ranking (`,RFlat`,
/// a vectors file with per-page checksums), the same base and queries. Made with:
///   quiver build --input base.fvecs --index l2-ivf8-pq4-rflat --factory IVF8_HNSW8,PQ4,RFlat --seed 3
///   quiver search --index l2-ivf8-pq4-rflat --queries ../v1/queries.fvecs --k 3 --nprobe 2 --k-factor 4 --out ids.ivecs --out-distances d.fvecs
/// and, every list probed and every vector a candidate (`--nprobe 8 --k-factor 700`), the exact
/// answer, which `format-spec/reader.py l2-ivf8-pq4-rflat --queries … --k 3` also gives.
#[test]
fn v1_2_rflat_fixture_opens_verifies_and_answers_as_it_did() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let index = Index::open(fixtures.join("v1_2/l2-ivf8-pq4-rflat")).unwrap();
    let info = index.info();
    assert_eq!(
        (info.factory.as_str(), info.refine, info.ntotal),
        ("IVF8_HNSW8,PQ4,RFlat", Some(quiver::RefineVectors::Float32), 2000)
    );
    assert_eq!(index.verify().unwrap().vectors, 2000);
    let q = VectorFile::open(fixtures.join("v1/queries.fvecs")).unwrap().read_all_f32().unwrap();
    let res =
        index.search(&q, &SearchParams { k: 3, nprobe: 2, ef_search: 16, k_factor: 4, ..Default::default() }).unwrap();
    for (i, (ids, dists)) in RFLAT_IDS.iter().zip(RFLAT_DISTANCES).enumerate() {
        assert_eq!(res.ids_of(i), ids, "query {i}");
        for (got, want) in res.distances_of(i).iter().zip(dists) {
            assert!((got - want).abs() < 1e-4, "query {i}: distance {got} vs {want}");
        }
    }
    let all = index
        .search(&q, &SearchParams { k: 3, nprobe: 8, ef_search: 16, k_factor: 700, ..Default::default() })
        .unwrap();
    for (i, ids) in RFLAT_EXACT.iter().enumerate() {
        assert_eq!(all.ids_of(i), ids, "query {i}, exact");
    }
}

/// Format 1.3 fixture, checked in when 1.3 was current: an `HNSW8,Flat` index (graph file and
/// vectors in id order) of the same base, answering the same queries. Made with:
///   quiver build --input base.fvecs --index l2-hnsw8-flat --factory HNSW8,Flat --seed 3
///   quiver search --index l2-hnsw8-flat --queries ../v1/queries.fvecs --k 3 --ef 16 --out ids.ivecs --out-distances d.fvecs
/// Its answers are the exact ones (the 1.2 fixture's every-vector re-rank gives the same).
#[test]
fn v1_3_graph_fixture_opens_verifies_and_answers_as_it_did() {
    const IDS: [[i64; 3]; 5] =
        [[1416, 1257, 1596], [1423, 1999, 834], [1691, 65, 1553], [168, 782, 304], [127, 1507, 1862]];
    const DISTANCES: [[f32; 3]; 5] = [
        [1.069432, 1.115509, 1.116637],
        [0.669792, 0.925631, 1.037175],
        [1.1005, 1.148062, 1.401672],
        [0.430399, 0.694025, 0.812399],
        [0.401735, 0.758815, 0.836647],
    ];
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let q = VectorFile::open(fixtures.join("v1/queries.fvecs")).unwrap().read_all_f32().unwrap();
    for load_into_ram in [false, true] {
        let opts = quiver::OpenOptions { load_into_ram, ..Default::default() };
        let index = Index::open_with(fixtures.join("v1_3/l2-hnsw8-flat"), opts).unwrap();
        let info = index.info();
        assert_eq!((info.factory.as_str(), info.hnsw_m, info.nlist, info.ntotal), ("HNSW8,Flat", 8, 0, 2000));
        assert_eq!(index.verify().unwrap().vectors, 2000);
        let res = index.search(&q, &SearchParams { k: 3, ef_search: 16, ..Default::default() }).unwrap();
        for (i, (ids, dists)) in IDS.iter().zip(DISTANCES).enumerate() {
            assert_eq!(res.ids_of(i), ids, "query {i}");
            for (got, want) in res.distances_of(i).iter().zip(dists) {
                assert!((got - want).abs() < 1e-4, "query {i}: distance {got} vs {want}");
            }
        }
    }
}

/// Format 1.5 fixture, checked in when 1.5 was current: the 1.2 fixture's index built again,
/// its ids kept with the vectors (the extents hold codes alone; each vector's record carries
/// its id, each extent's block of ids follows its records). Made with the 1.2 fixture's
/// commands; it answers as that one does, `format-spec/reader.py` gives the exact answer, and a
/// filtered search (which reads the blocks of ids) answers the same.
#[test]
fn v1_5_ids_with_vectors_fixture_opens_verifies_and_answers_as_it_did() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = fixtures.join("v1_5/l2-ivf8-pq4-rflat");
    let index = Index::open(&dir).unwrap();
    let info = index.info();
    assert_eq!(
        (info.factory.as_str(), info.refine, info.ntotal),
        ("IVF8_HNSW8,PQ4,RFlat", Some(quiver::RefineVectors::Float32), 2000)
    );
    assert_eq!(index.verify().unwrap().vectors, 2000);
    // Codes alone in the extents: 2000 vectors of 4 bytes over 8 lists take a page each.
    assert_eq!(std::fs::metadata(dir.join("seg-000000.qvs")).unwrap().len(), 4096 * 9);
    let q = VectorFile::open(fixtures.join("v1/queries.fvecs")).unwrap().read_all_f32().unwrap();
    let p = SearchParams { k: 3, nprobe: 2, ef_search: 16, k_factor: 4, ..Default::default() };
    let res = index.search(&q, &p).unwrap();
    let everyone = std::sync::Arc::new(quiver::IdFilter::new(0..2000));
    let filtered = index.search(&q, &SearchParams { filter: Some(everyone), ..p.clone() }).unwrap();
    for (i, (ids, dists)) in RFLAT_IDS.iter().zip(RFLAT_DISTANCES).enumerate() {
        assert_eq!(res.ids_of(i), ids, "query {i}");
        assert_eq!(filtered.ids_of(i), ids, "query {i}, filtered");
        for (got, want) in res.distances_of(i).iter().zip(dists) {
            assert!((got - want).abs() < 1e-4, "query {i}: distance {got} vs {want}");
        }
    }
    let all = index.search(&q, &SearchParams { nprobe: 8, k_factor: 700, ..p }).unwrap();
    for (i, ids) in RFLAT_EXACT.iter().enumerate() {
        assert_eq!(all.ids_of(i), ids, "query {i}, exact");
    }
}
