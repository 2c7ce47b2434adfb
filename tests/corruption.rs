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
    Index::open(dir)?.search(q, &SearchParams { k: 5, nprobe: 16, ef_search: 16 })
}

#[test]
fn flipped_byte_in_an_extent_is_a_checksum_error_at_search() {
    let (dir, q) = tiny_index();
    let seg = segment_path(dir.path());
    flip_byte(&seg, 4096 + 100);
    // Opening reads no extent, so it succeeds; the first read of the extent fails.
    let index = Index::open(dir.path()).unwrap();
    match index.search(&q, &SearchParams { k: 5, nprobe: 16, ef_search: 16 }) {
        Err(Error::Format(FormatError::ChecksumMismatch { file, offset, what, .. })) => {
            assert_eq!((file.as_str(), offset, what.as_str()), ("seg-000000.qvs", 4096, "extent"));
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    assert!(matches!(index.verify(), Err(Error::Format(FormatError::ChecksumMismatch { .. }))));
}

#[test]
fn flipped_padding_is_caught_too() {
    let (dir, q) = tiny_index();
    let seg = segment_path(dir.path());
    // Extents are written in list order, so the last list's extent ends the file; its padding
    // starts where its ids end.
    let index = Index::open(dir.path()).unwrap();
    let last = (0..16).rev().find(|&l| index.list_len(l) > 0).unwrap();
    let (count, code_size) = (index.list_len(last), index.info().pq_m as u64);
    let file_len = std::fs::metadata(&seg).unwrap().len();
    let padding = file_len - format::extent_len(count, code_size) + format::ids_offset(count, code_size) + 8 * count;
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
