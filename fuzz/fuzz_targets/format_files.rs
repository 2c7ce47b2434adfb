//! Whole files as they might be found on disk, checksums included: every decoder must return
//! an error or a value, never panic or allocate past what the bytes can hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver::format::*;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    decode(which, bytes);
});

fn decode(which: u8, bytes: &[u8]) {
    let f = "fuzz";
    match which % 9 {
        0 => drop(Manifest::decode(f, bytes)),
        1 => drop(QuantizerBlock::decode(f, bytes)),
        2 => drop(Codebooks::decode(f, bytes)),
        3 => drop(Directory::decode(f, bytes, CodeLayout::RowMajor { code_size: 8 })),
        4 => drop(Directory::decode(f, bytes, CodeLayout::Blocks32 { code_size: 16 })),
        5 => drop(Deletions::decode(f, bytes)),
        6 => drop(BuildState::decode(f, bytes)),
        7 => drop(VectorsFile::decode_head(f, bytes)),
        _ => drop(GraphFile::decode_head(f, bytes)),
    }
}
