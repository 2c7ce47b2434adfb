//! A small built index with one of its RAM-resident files replaced by fuzzed bytes behind a
//! valid checksum, and the manifest's record of it updated to match (what a buggy writer
//! could publish): open, search and verify must return results or errors, never panic.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quiver::format::{decode_file, encode_file, FileHeader, FileKind, Manifest};
use quiver::{BuildOptions, Index, NoProgress, SearchParams, SliceSource, Synthetic};

const D: usize = 8;

/// The pristine index: 300 vectors, lists with several extents and deletions.
fn pristine() -> &'static (tempfile::TempDir, PathBuf) {
    static INDEX: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    INDEX.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ix");
        let mut rows = Vec::new();
        Synthetic::new(D, 1).rows(0, 300, &mut rows);
        let opts = BuildOptions { factory: "IVF4_HNSW4,PQ4x4fs".into(), train_size: Some(200), ..Default::default() };
        quiver::build_index(&SliceSource { data: &rows[..200 * D], dim: D }, &dir, &opts, &NoProgress).unwrap();
        let more = SliceSource { data: &rows[200 * D..], dim: D };
        quiver::add_vectors(&dir, &more, None, &Default::default(), &NoProgress).unwrap();
        quiver::delete_ids(&dir, &[1, 5, 250]).unwrap();
        (tmp, dir)
    })
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, payload)) = data.split_first() else { return };
    let (_, src) = pristine();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix");
    copy(src, &dir);
    let mname = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("MANIFEST-"))
        .max()
        .unwrap();
    let mut m = Manifest::decode(&mname, &std::fs::read(dir.join(&mname)).unwrap()).unwrap();
    let kinds =
        [FileKind::Manifest, FileKind::Quantizer, FileKind::Codebooks, FileKind::Directory, FileKind::Deletions];
    let kind = kinds[which as usize % kinds.len()];
    if kind == FileKind::Manifest {
        std::fs::write(dir.join(&mname), encode_file(FileKind::Manifest, m.index_id, payload)).unwrap();
    } else {
        let Some(entry) = m.files.iter_mut().find(|f| f.kind.get() == kind as u32) else { return };
        let name = entry.name();
        let old = std::fs::read(dir.join(&name)).unwrap();
        // Half the time the fuzzer's bytes overwrite the old payload from an offset it chose.
        let new_payload = if which & 0x80 != 0 && payload.len() > 2 {
            let (_, old_payload) = decode_file(&name, kind, &old).unwrap();
            let mut p = old_payload.to_vec();
            let at = u16::from_le_bytes([payload[0], payload[1]]) as usize % (p.len() + 1);
            let patch = &payload[2..];
            let end = (at + patch.len()).min(p.len());
            p[at..end].copy_from_slice(&patch[..end - at]);
            p
        } else {
            payload.to_vec()
        };
        let bytes = encode_file(kind, m.index_id, &new_payload);
        let h = FileHeader::decode(&name, kind, &bytes).unwrap();
        entry.size = (bytes.len() as u64).into();
        entry.crc = h.payload_crc;
        std::fs::write(dir.join(&name), bytes).unwrap();
        std::fs::write(dir.join(&mname), m.encode()).unwrap();
    }
    if let Ok(index) = Index::open(&dir) {
        let q = vec![0.25f32; D * 2];
        let nlist = index.info().nlist.max(1);
        let k = (index.info().ntotal as usize).clamp(1, 10);
        let _ = index.search(&q, &SearchParams { k, nprobe: nlist.min(4), ..Default::default() });
    }
    let _ = quiver::verify_index(&dir);
});
