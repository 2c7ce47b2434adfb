//! Vector, id and ground-truth files in every supported format: opening and reading must give
//! an error or the rows, never panic or try to allocate what the file cannot hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

const EXTENSIONS: [&str; 9] = ["npy", "fvecs", "bvecs", "ivecs", "fbin", "u8bin", "i8bin", "ibin", "npy"];

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("f.{}", EXTENSIONS[which as usize % EXTENSIONS.len()]));
    std::fs::write(&path, bytes).unwrap();
    let Ok(f) = quiver::VectorFile::open(&path) else { return };
    // Readers size their buffers from the header: only read what a small file can hold.
    if f.len().saturating_mul(f.dim()) > 1 << 20 {
        return;
    }
    let _ = f.read_all_f32();
    let _ = f.read_all_i64();
    let _ = f.read_all_i32();
});
