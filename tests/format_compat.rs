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
    let res = index.search(&q, &SearchParams { k: 3, nprobe: 2, ef_search: 16 }).unwrap();
    for (i, (ids, dists)) in IDS.iter().zip(DISTANCES).enumerate() {
        assert_eq!(res.ids_of(i), ids, "query {i}");
        for (got, want) in res.distances_of(i).iter().zip(dists) {
            assert!((got - want).abs() < 1e-4, "query {i}: distance {got} vs {want}");
        }
    }
}
