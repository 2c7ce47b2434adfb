//! Payloads behind a valid header and checksum, so that the fuzzer reaches the structure
//! checks (a random file fails its checksum first): a writer with a bug, or a hand-made file.
//! Every decoder must return an error or a value, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver::format::*;

fuzz_target!(|data: &[u8]| {
    let Some((&which, payload)) = data.split_first() else { return };
    let f = "fuzz";
    let id = [7u8; 16];
    let sealed = |kind| encode_file(kind, id, payload);
    match which % 7 {
        0 => drop(Manifest::decode(f, &sealed(FileKind::Manifest))),
        1 => drop(QuantizerBlock::decode(f, &sealed(FileKind::Quantizer))),
        2 => drop(Codebooks::decode(f, &sealed(FileKind::Codebooks))),
        3 => drop(Directory::decode(f, &sealed(FileKind::Directory), CodeLayout::RowMajor { code_size: 8 })),
        4 => drop(Directory::decode(f, &sealed(FileKind::Directory), CodeLayout::Blocks32 { code_size: 16 })),
        5 => drop(Deletions::decode(f, &sealed(FileKind::Deletions))),
        _ => {
            // An extent: a 32-byte record, then the extent's bytes (its crc made to match).
            if payload.len() < 33 {
                return;
            }
            let (record, bytes) = payload.split_at(32);
            let Ok(mut e) = <Extent as zerocopy::FromBytes>::read_from_bytes(record) else { return };
            e.crc = quiver::format::crc32c(bytes).into();
            e.length = (bytes.len() as u64).into();
            let layout = if which & 0x80 == 0 {
                CodeLayout::RowMajor { code_size: 1 + (which as u32 & 0x0f) }
            } else {
                CodeLayout::Blocks32 { code_size: 1 + (which as u32 & 0x0f) }
            };
            // Bit 6: the ids kept with the vectors (format 1.5), the extent codes alone.
            let ids = if which & 0x40 == 0 { IdsPlace::InExtent } else { IdsPlace::WithVectors };
            if let Ok(v) = decode_extent(f, &e, (layout, ids), bytes) {
                let _ = (v.has_ids(), v.ids().count());
            }
        }
    }
});
