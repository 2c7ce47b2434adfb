//! Damaged indexes: every structure, flipped, truncated, foreign or from the future, must give a
//! typed error naming the file (and offset), never a panic and never a wrong answer.

mod common;

use std::path::Path;

use common::*;
use quiver::format::{self, FormatError, HEADER_LEN};
use quiver::{Error, Index, Metric, SearchParams};

fn tiny_index() -> (tempfile::TempDir, Vec<f32>) {
    let (d, n) = (16, 4_000);
    let (base, q) = synthetic(n, 4, d, 11);
    let dir = tempfile::tempdir().unwrap();
    build_slice(&base, d, dir.path(), &opts("IVF16_HNSW8,PQ8", Metric::L2));
    (dir, q)
}

fn search_all(dir: &Path, q: &[f32]) -> quiver::Result<quiver::SearchResults> {
    Index::open(dir)?.search(q, &SearchParams { k: 5, nprobe: 16, ef_search: 16, ..Default::default() })
}

#[test]
fn flipped_byte_in_an_extent_is_a_checksum_error_at_search() {
    let (dir, q) = tiny_index();
    let seg = segment_path(dir.path());
    flip_byte(&seg, 4096 + 100);
    // Opening reads no extent, so it succeeds; the first read of the extent fails.
    let index = Index::open(dir.path()).unwrap();
    match index.search(&q, &SearchParams { k: 5, nprobe: 16, ef_search: 16, ..Default::default() }) {
        Err(Error::Format(FormatError::ChecksumMismatch { file, offset, what, .. })) => {
            assert_eq!((file.as_str(), offset, what.as_str()), ("seg-000000.qvs", 4096, "extent"));
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    let r = index.verify().unwrap();
    assert!(!r.is_ok());
    assert!(
        r.faults.iter().any(|f| f.file == "seg-000000.qvs" && f.offset == Some(4096) && f.what.contains("checksum")),
        "{:?}",
        r.faults
    );
}

/// Queries in flight meet the damaged extent as one query alone does: the batch fails with the
/// same checksum error, naming file and offset, on any engine; the searcher's rings are drained
/// and serve the next batch (which fails the same way, rather than hanging or panicking).
#[test]
fn a_damaged_extent_fails_queries_in_flight_and_the_searcher_goes_on() {
    let (dir, q) = tiny_index();
    flip_byte(&segment_path(dir.path()), 4096 + 100);
    let p = SearchParams { k: 5, nprobe: 16, ef_search: 16, ..Default::default() };
    for io in [quiver::IoMode::Auto, quiver::IoMode::Pread] {
        let index = Index::open_with(dir.path(), quiver::OpenOptions { io, ..Default::default() }).unwrap();
        let searcher = quiver::Searcher::new(&index, 2).unwrap().with_inflight(3).unwrap();
        let many: Vec<f32> = q.repeat(8);
        for round in 0..2 {
            match searcher.search(&many, &p) {
                Err(Error::Format(FormatError::ChecksumMismatch { file, offset, .. })) => {
                    assert_eq!((file.as_str(), offset), ("seg-000000.qvs", 4096), "{io:?} round {round}");
                }
                other => panic!("{io:?} round {round}: expected a checksum error, got {other:?}"),
            }
        }
    }
}

#[test]
fn a_damaged_extent_never_enters_the_cache() {
    let (dir, q) = tiny_index();
    flip_byte(&segment_path(dir.path()), 4096 + 100);
    let p = SearchParams { k: 5, nprobe: 16, ef_search: 16, ..Default::default() };
    let cached = quiver::OpenOptions { cache_bytes: 1 << 30, ..Default::default() };
    let index = Index::open_with(dir.path(), cached).unwrap();
    for _ in 0..2 {
        assert!(matches!(index.search(&q, &p), Err(Error::Format(FormatError::ChecksumMismatch { .. }))));
    }
    let preload = quiver::OpenOptions { cache_preload: true, ..cached };
    assert!(matches!(Index::open_with(dir.path(), preload), Err(Error::Format(FormatError::ChecksumMismatch { .. }))));
}

/// Layout 2: a flipped nibble in a block of fast-scan codes, in the zero codes that pad a
/// block, or in the codebooks (16 centroids) is caught as in layout 1.
#[test]
fn damaged_fast_scan_indexes_are_caught() {
    let (d, n) = (16, 4_000);
    let (base, q) = synthetic(n, 4, d, 11);
    let dir = tempfile::tempdir().unwrap();
    build_slice(&base, d, dir.path(), &opts("IVF16_HNSW8,PQ16x4fs", Metric::L2));
    let clean = search_all(dir.path(), &q).unwrap();
    let index = Index::open(dir.path()).unwrap();
    let count = index.list_len(0);
    // The first list's codes end where its last block's padding vectors begin.
    let pad = 4096 + count * 8;
    assert!(!count.is_multiple_of(32), "list 0 fills its last block; pick another seed");
    drop(index);
    let seg = segment_path(dir.path());
    for at in [4096 + 3, pad] {
        flip_byte(&seg, at);
        assert!(matches!(search_all(dir.path(), &q), Err(Error::Format(FormatError::ChecksumMismatch { .. }))));
        assert!(!Index::open(dir.path()).unwrap().verify().unwrap().is_ok());
        flip_byte(&seg, at);
    }
    assert_eq!(search_all(dir.path(), &q).unwrap().ids, clean.ids, "flipped back, all is well");
    flip_byte(&dir.path().join("codebooks.qvc"), HEADER_LEN as u64 + 100);
    assert!(matches!(Index::open(dir.path()), Err(Error::Format(FormatError::ChecksumMismatch { .. }))));
}

#[test]
fn flipped_padding_is_caught_too() {
    let (dir, q) = tiny_index();
    let seg = segment_path(dir.path());
    // Extents are written in list order, so the last list's extent ends the file; its padding
    // starts where its ids end.
    let index = Index::open(dir.path()).unwrap();
    let last = (0..16).rev().find(|&l| index.list_len(l) > 0).unwrap();
    let (count, layout) = (index.list_len(last), index.info().code_layout());
    let file_len = std::fs::metadata(&seg).unwrap().len();
    let padding = file_len - layout.extent_len(count) + layout.ids_offset(count) + 8 * count;
    assert!(padding < file_len, "the last extent has no padding; pick another fixture");
    drop(index);
    flip_byte(&seg, padding);
    assert!(matches!(search_all(dir.path(), &q), Err(Error::Format(FormatError::ChecksumMismatch { .. }))));
}

#[test]
fn truncated_segment_is_refused_at_open() {
    let (dir, _) = tiny_index();
    let seg = segment_path(dir.path());
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 4096).unwrap();
    match Index::open(dir.path()) {
        Err(Error::Format(FormatError::Truncated { file, needed, available, .. })) => {
            assert_eq!((file.as_str(), needed, available), ("seg-000000.qvs", len, len - 4096));
        }
        Err(e) => panic!("expected truncation, got {e}"),
        Ok(_) => panic!("expected truncation, got an open index"),
    }
}

#[test]
fn every_ram_resident_file_is_checked_on_open() {
    for name in ["MANIFEST-000001", "quantizer.qvq", "codebooks.qvc", "lists.qvd"] {
        let (dir, _) = tiny_index();
        let path = dir.path().join(name);
        let len = std::fs::metadata(&path).unwrap().len();
        // Header, payload start, payload middle, last byte.
        for off in [20, HEADER_LEN as u64 + 1, len / 2, len - 1] {
            flip_byte(&path, off);
            let e = Index::open(dir.path()).err().unwrap_or_else(|| panic!("{name}: flip at {off} undetected"));
            assert!(e.to_string().contains(name), "{name}: error does not name the file: {e}");
            flip_byte(&path, off);
        }
        std::fs::write(&path, &std::fs::read(&path).unwrap()[..(len / 2) as usize]).unwrap();
        assert!(Index::open(dir.path()).is_err(), "{name}: truncation undetected");
    }
}

#[test]
fn damaged_segment_header_page_is_refused() {
    let (dir, _) = tiny_index();
    flip_byte(&segment_path(dir.path()), 10);
    assert!(matches!(Index::open(dir.path()), Err(Error::Format(FormatError::ChecksumMismatch { .. }))));
}

#[test]
fn a_newer_format_version_is_refused_with_a_clear_message() {
    let (dir, _) = tiny_index();
    let path = dir.path().join("MANIFEST-000001");
    let mut b = std::fs::read(&path).unwrap();
    b[14..16].copy_from_slice(&(format::FORMAT_MINOR + 1).to_le_bytes());
    let crc = format::crc32c(&b[..HEADER_LEN - 4]);
    b[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, b).unwrap();
    let e = Index::open(dir.path()).err().expect("must refuse");
    assert!(matches!(e, Error::Format(FormatError::UnsupportedVersion { .. })), "{e}");
    assert!(e.to_string().contains("newer quiver"), "{e}");
}

#[test]
fn files_from_another_index_are_told_apart() {
    let (a, _) = tiny_index();
    let (d, n) = (16, 4_000);
    let (base, _) = synthetic(n, 0, d, 12);
    let b = tempfile::tempdir().unwrap();
    build_slice(&base, d, b.path(), &opts("IVF16_HNSW8,PQ8", Metric::L2));
    std::fs::copy(b.path().join("codebooks.qvc"), a.path().join("codebooks.qvc")).unwrap();
    assert!(matches!(Index::open(a.path()), Err(Error::Corrupt { .. })));
}

#[test]
fn foreign_and_missing_directories() {
    let d = tempfile::tempdir().unwrap();
    assert!(matches!(Index::open(d.path().join("nope")), Err(Error::MissingIndex { .. })));
    std::fs::write(d.path().join("notes.txt"), "hello").unwrap();
    assert!(matches!(Index::open(d.path()), Err(Error::NotAnIndex { .. })));
    std::fs::write(d.path().join("MANIFEST-000001"), vec![b'x'; 500]).unwrap();
    assert!(matches!(Index::open(d.path()), Err(Error::Format(FormatError::BadMagic { .. }))));
}

/// Class 6: a damaged newest manifest does not hide a sound older generation; opening says
/// which generation it passed over and why, and verify reports the damaged one as a fault.
#[test]
fn a_damaged_newest_manifest_falls_back_to_the_older_generation() {
    let (dir, q) = tiny_index();
    let want = search_all(dir.path(), &q).unwrap();
    std::fs::write(dir.path().join("MANIFEST-000002"), b"garbage, not a manifest").unwrap();
    let index = Index::open(dir.path()).unwrap();
    assert_eq!(index.info().generation, 1);
    let skipped = index.skipped_generations();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].generation, 2);
    assert!(skipped[0].reason.contains("MANIFEST-000002"), "{}", skipped[0].reason);
    assert_eq!(search_all(dir.path(), &q).unwrap(), want);
    let r = quiver::verify_index(dir.path()).unwrap();
    assert_eq!(r.generation, Some(1));
    assert!(r.faults.iter().any(|f| f.file == "MANIFEST-000002"), "{:?}", r.faults);
    // A manifest that decodes but claims another generation than its name is damage too.
    std::fs::copy(dir.path().join("MANIFEST-000001"), dir.path().join("MANIFEST-000002")).unwrap();
    let index = Index::open(dir.path()).unwrap();
    assert!(index.skipped_generations()[0].reason.contains("named for 2"), "{:?}", index.skipped_generations());
    // With no sound manifest at all, the newest one's error is returned.
    flip_byte(&dir.path().join("MANIFEST-000001"), 100);
    assert!(Index::open(dir.path()).is_err());
}

/// Class 7: verify goes on past the first fault, reports each with its file and offset, and
/// checks what the spec says is zero although no checksum covers it (a segment's header page).
#[test]
fn verify_reports_every_fault_and_checks_header_page_padding() {
    let (dir, _) = tiny_index();
    assert!(quiver::verify_index(dir.path()).unwrap().is_ok());
    let seg = segment_path(dir.path());
    flip_byte(&seg, 1000); // header-page padding: no checksum covers it
    let r = quiver::verify_index(dir.path()).unwrap();
    assert_eq!(r.faults.len(), 1, "{:?}", r.faults);
    assert_eq!((r.faults[0].file.as_str(), r.faults[0].offset), ("seg-000000.qvs", Some(1000)));
    assert!(r.faults[0].what.contains("padding"), "{}", r.faults[0]);
    // Three more faults in three places: all reported, and the walk still counts every vector
    // of the sound extents.
    flip_byte(&seg, 4096 + 10);
    flip_byte(&dir.path().join("codebooks.qvc"), 200);
    let last = std::fs::metadata(&seg).unwrap().len() - 1;
    flip_byte(&seg, last);
    let r = quiver::verify_index(dir.path()).unwrap();
    let files: Vec<&str> = r.faults.iter().map(|f| f.file.as_str()).collect();
    assert!(files.contains(&"codebooks.qvc"), "{files:?}");
    assert!(r.faults.iter().filter(|f| f.file == "seg-000000.qvs").count() >= 4, "{:?}", r.faults);
    assert!(r.vectors > 0 && r.vectors < 4_000, "{}", r.vectors);
}

/// Class 9: a segment that grew, and one that is gone, are named as damage to the index.
#[test]
fn grown_and_missing_segments_say_what_happened() {
    let (dir, _) = tiny_index();
    let seg = segment_path(dir.path());
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, b"x").unwrap();
    let e = Index::open(dir.path()).err().expect("a grown segment is refused");
    assert!(e.to_string().contains("grew") && !e.to_string().contains("cut short"), "{e}");
    std::fs::remove_file(&seg).unwrap();
    let e = Index::open(dir.path()).err().expect("a missing segment is refused");
    assert!(matches!(&e, Error::Corrupt { file, .. } if file == "seg-000000.qvs"), "{e}");
    assert!(e.to_string().contains("missing") && e.to_string().contains("damaged"), "{e}");
    let r = quiver::verify_index(dir.path()).unwrap();
    assert!(r.faults.iter().any(|f| f.what.contains("missing")), "{:?}", r.faults);
}
