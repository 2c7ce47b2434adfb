//! A living index: add, delete and compact as generations, checked against a brute-force
//! model of what the index holds; readers that keep their generation while writers commit;
//! what killed writers leave is removed by the next writer and is no fault.

mod common;

use std::path::Path;

use quiver::{
    add_vectors, compact, delete_ids, verify_index, ChangeOptions, Error, Index, Metric, NoProgress, SearchParams,
    SliceSource,
};

const D: usize = 16;

type Model = common::Model<D>;

/// Every query's ids from the index (all lists probed: exact for `,Flat`).
fn search_all(dir: &Path, queries: &[f32], k: usize) -> Vec<i64> {
    let index = Index::open(dir).unwrap();
    let p = SearchParams { k, nprobe: index.info().nlist, ..Default::default() };
    index.search(queries, &p).unwrap().ids
}

fn check_against(dir: &Path, model: &Model, queries: &[f32], k: usize) {
    let got = search_all(dir, queries, k);
    for (q, row) in queries.chunks(D).enumerate() {
        assert_eq!(&got[q * k..(q + 1) * k], model.search(row, k).as_slice(), "query {q}");
    }
    let v = verify_index(dir).unwrap();
    assert!(v.is_ok(), "{:?}", v.faults);
    assert_eq!(Index::open(dir).unwrap().info().ntotal, model.rows.len() as u64);
}

fn add(dir: &Path, data: &[f32], ids: Option<&[i64]>) -> quiver::Result<quiver::ChangeReport> {
    add_vectors(dir, &SliceSource { data, dim: D }, ids, &ChangeOptions::default(), &NoProgress)
}

#[test]
fn add_delete_compact_match_a_brute_force_model() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix");
    let (base, queries) = common::synthetic(800, 20, D, 3);
    common::build_slice(&base, D, &dir, &common::opts("IVF8_HNSW8,Flat", Metric::L2));
    let mut model = Model::default();
    model.add(0..800, &base);
    check_against(&dir, &model, &queries, 10);

    // Additions without ids continue after the largest id.
    let (more, _) = common::synthetic(300, 0, D, 4);
    let r = add(&dir, &more, None).unwrap();
    assert_eq!((r.generation, r.vectors, r.ntotal), (Some(2), 300, 1100));
    model.add(800..1100, &more);
    check_against(&dir, &model, &queries, 10);

    // Delete the nearest neighbours of the first queries, and some ids that are not there.
    let near: Vec<i64> = search_all(&dir, &queries[..3 * D], 5);
    let mut gone: Vec<i64> = near.clone();
    gone.extend([5_000, 7_000]);
    let r = delete_ids(&dir, &gone).unwrap();
    assert_eq!((r.generation, r.not_found), (Some(3), 2));
    assert_eq!(r.vectors as usize, {
        let mut n = near.clone();
        n.sort();
        n.dedup();
        n.len()
    });
    model.delete(&near.iter().map(|&i| i as u64).collect::<Vec<_>>());
    check_against(&dir, &model, &queries, 10);
    assert_eq!(Index::open(&dir).unwrap().info().deleted, r.vectors);

    // A deleted id may come back with --ids; a live one may not, nor one given twice.
    let back = near[0];
    let (row, _) = common::synthetic(1, 0, D, 9);
    add(&dir, &row, Some(&[back])).unwrap();
    model.add([back as u64], &row);
    check_against(&dir, &model, &queries, 10);
    let live = add(&dir, &row, Some(&[back])).unwrap_err().to_string();
    assert!(live.contains("already in the index"), "{live}");
    let (two, _) = common::synthetic(2, 0, D, 10);
    let twice = add(&dir, &two, Some(&[9_000, 9_000])).unwrap_err().to_string();
    assert!(twice.contains("given twice"), "{twice}");
    // Deleted ids are never handed out again: the next addition starts past every id.
    let r = add(&dir, &two, None).unwrap();
    model.add([1100, 1101], &two);
    assert_eq!(r.ntotal, model.rows.len() as u64);
    check_against(&dir, &model, &queries, 10);

    // Compaction: one extent per list, nothing deleted left, the same results.
    let before = search_all(&dir, &queries, 10);
    let r = compact(&dir, &ChangeOptions::default()).unwrap();
    assert!(r.lists_rewritten > 0 && r.vectors > 0, "{r:?}");
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.info().deleted, 0);
    for l in 0..index.info().nlist {
        assert!(index.list_extents(l) <= 1, "list {l}");
    }
    drop(index);
    assert_eq!(search_all(&dir, &queries, 10), before);
    check_against(&dir, &model, &queries, 10);
    // Nothing left to compact: no new generation.
    assert_eq!(compact(&dir, &ChangeOptions::default()).unwrap().generation, None);
}

/// Compaction gives the same ids and distances for codes too (8-bit, fast-scan, with
/// re-rank), and deleted ids never come back from any of them.
#[test]
fn compaction_keeps_results_for_every_code_layout() {
    let (base, queries) = common::synthetic(1500, 20, D, 5);
    for factory in ["IVF8_HNSW8,PQ8", "IVF8_HNSW8,PQ8x4fs", "IVF8_HNSW8,PQ4,RFlat"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ix");
        let mut o = common::opts(factory, Metric::L2);
        o.train_size = Some(1500);
        common::build_slice(&base[..1000 * D], D, &dir, &o);
        add(&dir, &base[1000 * D..], None).unwrap();
        let gone: Vec<i64> = (0..1500).step_by(7).collect();
        delete_ids(&dir, &gone).unwrap();
        let search = || {
            let index = Index::open(&dir).unwrap();
            let k_factor = if factory.ends_with("RFlat") { 4 } else { 1 };
            let p = SearchParams { k: 10, nprobe: 4, k_factor, ..Default::default() };
            let r = index.search(&queries, &p).unwrap();
            (r.ids, r.distances)
        };
        let before = search();
        assert!(before.0.iter().all(|&id| id >= 0 && id % 7 != 0), "{factory}: a deleted id was returned");
        compact(&dir, &ChangeOptions::default()).unwrap();
        assert_eq!(search(), before, "{factory}");
        let v = verify_index(&dir).unwrap();
        assert!(v.is_ok(), "{factory}: {:?}", v.faults);
    }
}

/// An index opened before a commit answers from its generation, and the files it uses stay
/// until it is dropped; `reload` moves to the newest.
#[test]
fn readers_keep_their_generation_while_writers_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix");
    let (base, queries) = common::synthetic(600, 5, D, 6);
    common::build_slice(&base, D, &dir, &common::opts("IVF4_HNSW8,Flat", Metric::L2));
    let mut reader = Index::open(&dir).unwrap();
    let p = SearchParams { k: 5, nprobe: 4, ..Default::default() };
    let first = reader.search(&queries, &p).unwrap().ids;
    delete_ids(&dir, &first).unwrap();
    compact(&dir, &ChangeOptions::default()).unwrap();
    // The build's segment and directory are still there: the reader holds generation 1.
    assert!(dir.join("seg-000000.qvs").exists() && dir.join("MANIFEST-000001").exists());
    assert_eq!(reader.search(&queries, &p).unwrap().ids, first, "the old generation still answers");
    assert!(reader.reload().unwrap());
    assert_eq!(reader.info().generation, 3);
    let now = reader.search(&queries, &p).unwrap().ids;
    assert!(now.iter().all(|id| !first.contains(id)));
    assert!(!reader.reload().unwrap(), "already the newest");
    drop(reader);
    // Nothing holds generation 1 now: the next writer removes it and its files.
    compact(&dir, &ChangeOptions::default()).unwrap();
    assert!(!dir.join("seg-000000.qvs").exists() && !dir.join("MANIFEST-000001").exists());
    assert!(verify_index(&dir).unwrap().is_ok());
}

/// What a killed writer leaves (an unnamed segment, a temporary manifest, a scratch area) is
/// no fault, and the next writer removes it; files quiver does not write are never touched.
#[test]
fn leftovers_of_a_killed_writer_are_cleaned_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix");
    let (base, queries) = common::synthetic(500, 3, D, 8);
    common::build_slice(&base, D, &dir, &common::opts("IVF4_HNSW8,Flat", Metric::L2));
    std::fs::write(dir.join("seg-000042.qvs"), b"half a segment").unwrap();
    std::fs::write(dir.join(".MANIFEST-000002.tmp"), b"half a manifest").unwrap();
    std::fs::create_dir_all(dir.join(".write-tmp")).unwrap();
    std::fs::write(dir.join(".write-tmp/run-0-10.qvr"), b"run").unwrap();
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
    let v = verify_index(&dir).unwrap();
    assert!(v.is_ok(), "{:?}", v.faults);
    let before = search_all(&dir, &queries, 5);
    let r = delete_ids(&dir, &[before[0]]).unwrap();
    assert!(r.generation.is_some());
    for gone in ["seg-000042.qvs", ".MANIFEST-000002.tmp", ".write-tmp"] {
        assert!(!dir.join(gone).exists(), "{gone} is still there");
    }
    assert!(dir.join("notes.txt").exists(), "a file quiver did not write was removed");
    assert!(verify_index(&dir).unwrap().is_ok());
}

/// Bad input to a change gets a clear error and leaves the index as it was.
#[test]
fn changes_refuse_bad_input_and_graph_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix");
    let (base, _) = common::synthetic(400, 0, D, 11);
    common::build_slice(&base, D, &dir, &common::opts("IVF4_HNSW8,Flat", Metric::L2));
    let wrong = vec![0.5f32; 3 * (D + 1)];
    let e = add_vectors(&dir, &SliceSource { data: &wrong, dim: D + 1 }, None, &ChangeOptions::default(), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dimension 17"), "{e}");
    let (row, _) = common::synthetic(2, 0, D, 12);
    assert!(add(&dir, &row, Some(&[1])).unwrap_err().to_string().contains("exactly one id per vector"));
    assert!(add(&dir, &row, Some(&[1, -3])).unwrap_err().to_string().contains("negative"));
    let mut nan = row.clone();
    nan[3] = f32::NAN;
    assert!(add(&dir, &nan, None).is_err());
    assert!(delete_ids(&dir, &[]).is_err());
    assert_eq!(delete_ids(&dir, &[10_000]).unwrap().generation, None, "nothing live: nothing committed");
    assert_eq!(Index::open(&dir).unwrap().info().generation, 1);
    assert!(matches!(delete_ids(&tmp.path().join("nothing"), &[1]), Err(Error::MissingIndex { .. })));

    let graph = tmp.path().join("graph");
    common::build_slice(&base, D, &graph, &common::opts("HNSW8,Flat", Metric::L2));
    let e = add(&graph, &row, None).unwrap_err().to_string();
    assert!(e.contains("cannot take additions"), "{e}");
}
