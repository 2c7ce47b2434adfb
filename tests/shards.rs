//! A build fanned out in shards (train once, encode shards in parallel, commit them as one
//! generation) answers exactly as one build of the concatenated input with the same seed.

mod common;

use std::path::PathBuf;

use quiver::{
    build_index, commit_shards, prepare_shard, train_index, verify_index, ChangeOptions, Index, Metric, NoProgress,
    SearchParams, SliceSource,
};

const D: usize = 16;

#[test]
fn sharded_build_equals_a_single_build() {
    let (base, queries) = common::synthetic(3000, 10, D, 13);
    for factory in ["IVF16_HNSW8,PQ8", "IVF16_HNSW8,PQ8x4fs", "IVF16_HNSW8,PQ4,RFlat"] {
        let tmp = tempfile::tempdir().unwrap();
        let opts = common::opts(factory, Metric::L2);
        let all = SliceSource { data: &base, dim: D };
        let single = tmp.path().join("single");
        build_index(&all, &single, &opts, &NoProgress).unwrap();

        let sharded = tmp.path().join("sharded");
        train_index(&all, &sharded, &opts, &NoProgress).unwrap();
        assert_eq!(Index::open(&sharded).unwrap().info().ntotal, 0);
        let cuts = [0usize, 1000, 1700, 3000];
        let areas: Vec<PathBuf> = std::thread::scope(|s| {
            let handles: Vec<_> = cuts
                .windows(2)
                .enumerate()
                .map(|(i, w)| {
                    let (dir, part) = (&sharded, &base[w[0] * D..w[1] * D]);
                    s.spawn(move || {
                        let src = SliceSource { data: part, dim: D };
                        prepare_shard(dir, &src, w[0] as u64, i as u32, &ChangeOptions::default(), &NoProgress).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let r = commit_shards(&sharded, &areas).unwrap();
        assert_eq!((r.generation, r.vectors, r.ntotal), (Some(2), 3000, 3000));
        assert!(!sharded.join(".shards").exists(), "the shard areas are removed once committed");
        assert!(verify_index(&sharded).unwrap().is_ok());

        let k_factor = if factory.ends_with("RFlat") { 4 } else { 1 };
        let p = SearchParams { k: 10, nprobe: 6, k_factor, ..Default::default() };
        let a = Index::open(&single).unwrap().search(&queries, &p).unwrap();
        let b = Index::open(&sharded).unwrap().search(&queries, &p).unwrap();
        assert_eq!((a.ids, a.distances), (b.ids, b.distances), "{factory}");

        // A shard whose ids overlap what is committed is refused.
        let src = SliceSource { data: &base[..100 * D], dim: D };
        let again = prepare_shard(&sharded, &src, 50, 9, &ChangeOptions::default(), &NoProgress).unwrap();
        let e = commit_shards(&sharded, &[again]).unwrap_err().to_string();
        assert!(e.contains("overlap"), "{e}");
    }
}
