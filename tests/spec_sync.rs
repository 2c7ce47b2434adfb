//! The field tables in `format-spec/*.md` must match the zerocopy structs: same fields, in the
//! same order, at the same offsets, with the same sizes, adding up to the struct's size. The spec
//! is what a reader in another language is written from, so it may not drift from the code.

use std::mem::{offset_of, size_of};
use std::path::Path;

use quiver::format::{
    BuildStateBody, CodebookHeader, Deleted, DeletionsHeader, DirectoryHeader, Extent, FileEntry, FileHeader,
    GraphHeader, ManifestBody, Params, QuantizerHeader, RunGroup, RunHeader, VectorsHeader,
};
use zerocopy::FromZeros;

/// (field, offset, size) rows of the table under "### `name`" in `file`.
fn spec_table(file: &str, name: &str) -> Vec<(String, usize, usize)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let heading = format!("### `{name}`");
    let start = text.find(&heading).unwrap_or_else(|| panic!("{file}: no table for {name}"));
    let mut rows = Vec::new();
    for line in text[start..].lines().skip(1) {
        let line = line.trim();
        if line.is_empty() && !rows.is_empty() {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 {
            continue;
        }
        if let (Ok(off), Ok(size)) = (cells[1].parse::<usize>(), cells[2].parse::<usize>()) {
            rows.push((cells[3].to_string(), off, size));
        }
    }
    assert!(!rows.is_empty(), "{file}: empty table for {name}");
    rows
}

macro_rules! fields {
    ($t:ty, [$($f:ident),* $(,)?]) => {{
        let z = <$t>::new_zeroed();
        vec![$((stringify!($f).to_string(), offset_of!($t, $f), std::mem::size_of_val(&z.$f))),*]
    }};
}

fn check(file: &str, name: &str, code: Vec<(String, usize, usize)>, total: usize) {
    let spec = spec_table(file, name);
    assert_eq!(spec, code, "{file}: table for {name} differs from the struct");
    let last = code.last().unwrap();
    assert_eq!(last.1 + last.2, total, "{name}: fields do not cover the struct");
    assert!(file_mentions_size(file, name, total), "{file}: heading of {name} must say ({total} bytes)");
}

fn file_mentions_size(file: &str, name: &str, total: usize) -> bool {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec").join(file)).unwrap();
    text.contains(&format!("### `{name}` ({total} bytes)"))
}

#[test]
fn file_header() {
    let f = fields!(
        FileHeader,
        [
            magic,
            kind,
            format_major,
            format_minor,
            index_id,
            payload_offset,
            payload_len,
            payload_crc,
            reserved,
            header_crc
        ]
    );
    check("02-file-header.md", "FileHeader", f, size_of::<FileHeader>());
}

#[test]
fn manifest() {
    let f = fields!(ManifestBody, [generation, params, n_files, next_id, deleted, reserved]);
    check("03-manifest.md", "ManifestBody", f, size_of::<ManifestBody>());
    let f = fields!(
        Params,
        [
            dim,
            metric,
            code_layout,
            raw_codes,
            refine,
            nlist,
            pq_m,
            pq_nbits,
            hnsw_m,
            ef_construction,
            ef_search,
            niter,
            reserved1,
            ntotal,
            seed,
            train_size,
            factory
        ]
    );
    check("03-manifest.md", "Params", f, size_of::<Params>());
    let f = fields!(FileEntry, [name, kind, generation, size, crc, reserved2]);
    check("03-manifest.md", "FileEntry", f, size_of::<FileEntry>());
}

#[test]
fn directory_and_extent() {
    let f = fields!(DirectoryHeader, [nlist, n_extents, n_segments, code_size, ntotal, flags]);
    check("04-segment.md", "DirectoryHeader", f, size_of::<DirectoryHeader>());
    let f = fields!(Extent, [segment, count, offset, length, crc, vectors_page]);
    check("04-segment.md", "Extent", f, size_of::<Extent>());
}

#[test]
fn vectors() {
    let f = fields!(
        VectorsHeader,
        [dim, elem, reserved0, vector_bytes, table_crc, n_pages, n_vectors, record_bytes, header_crc]
    );
    check("10-vectors.md", "VectorsHeader", f, size_of::<VectorsHeader>());
}

#[test]
fn graph() {
    let f = fields!(
        GraphHeader,
        [n_nodes, n_slots, levels_page, n_pages, m, entry_point, max_level, table_crc, reserved, header_crc]
    );
    check("11-graph.md", "GraphHeader", f, size_of::<GraphHeader>());
}

#[test]
fn quantizer_and_codebooks() {
    let f = fields!(QuantizerHeader, [nlist, dim, hnsw_m, entry_point, max_level, reserved, n_slots]);
    check("05-codebooks.md", "QuantizerHeader", f, size_of::<QuantizerHeader>());
    let f = fields!(CodebookHeader, [m, ksub, dsub, nbits]);
    check("05-codebooks.md", "CodebookHeader", f, size_of::<CodebookHeader>());
}

#[test]
fn build_staging() {
    let f = fields!(
        BuildStateBody,
        [
            params,
            input_fingerprint,
            input_elem,
            two_level,
            reserved0,
            segment_bytes,
            max_extent_vectors,
            memory_budget,
            tmp_dir_len,
            reserved
        ]
    );
    check("09-build-staging.md", "BuildStateBody", f, size_of::<BuildStateBody>());
    let f = fields!(RunHeader, [first_row, end_row, nlist, code_size, id_bytes, n_groups, records, reserved]);
    check("09-build-staging.md", "RunHeader", f, size_of::<RunHeader>());
    let f = fields!(RunGroup, [list, count]);
    check("09-build-staging.md", "RunGroup", f, size_of::<RunGroup>());
}

/// The spec's CRC-32C check value must be what the library computes.
#[test]
fn crc_check_value() {
    assert_eq!(quiver::format::crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn deletion_set() {
    let f = fields!(DeletionsHeader, [count, reserved]);
    check("12-generations.md", "DeletionsHeader", f, size_of::<DeletionsHeader>());
    let f = fields!(Deleted, [id, generation, list]);
    check("12-generations.md", "Deleted", f, size_of::<Deleted>());
}
