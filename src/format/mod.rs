//! The on-disk format, version 1 (1.2): byte layouts only. Every structure here is a `#[repr(C)]`
//! zerocopy type with explicit little-endian fields, specified field by field in `format-spec/`
//! (and `tests/spec_sync.rs` checks the two agree). This layer knows nothing of k-means, HNSW or
//! PQ: it sees shapes, arrays of little-endian numbers and checksums. The engine converts.
//!
//! Every file starts with a [`FileHeader`] (magic, kind, version, index id, payload length and
//! crc32c, header crc32c). Files are read whole and verified on open, except segments, whose
//! extents are verified one by one as they arrive from disk.

mod build_state;
mod codebooks;
mod deletions;
mod directory;
mod error;
mod graph;
mod header;
mod layout;
mod manifest;
mod paged;
mod quantizer;
mod run;
mod segment;
mod vectors;

pub use build_state::{BuildState, BuildStateBody};
pub use codebooks::{CodebookHeader, Codebooks};
pub use deletions::{Deleted, Deletions, DeletionsHeader};
pub use directory::{Directory, DirectoryHeader, Extent, DIRECTORY_IDS_WITH_VECTORS};
pub use error::FormatError;
pub use graph::{GraphFile, GraphHeader, MAX_GRAPH_NODES};
pub use header::{decode_file, encode_file, finish_file, FileHeader, FileKind, HEADER_LEN};
pub use layout::{CodeLayout, IdsPlace, LAYOUT_BLOCK};
pub use manifest::{FileEntry, Manifest, ManifestBody, Params, FILE_NAME_LEN};
pub use paged::{encode_table, file_len, page_offset, table_span, PageTable};
pub use quantizer::{QuantizerBlock, QuantizerHeader};
pub use run::{run_id_bytes, run_payload_len, RunGroup, RunHeader};
pub use segment::{decode_extent, encode_codes_extent, encode_extent, extent_view, segment_header_page, ExtentView};
pub use vectors::{VectorsFile, VectorsHeader};

/// First eight bytes of every quiver file.
pub const MAGIC: [u8; 8] = *b"QUIVERix";
/// Files with a different major version are not readable by this library.
pub const FORMAT_MAJOR: u16 = 1;
/// Highest minor version this library reads (and the one it writes).
pub const FORMAT_MINOR: u16 = 5;
/// Alignment of every extent and of the extent area of a segment: the O_DIRECT unit.
pub const PAGE: u64 = 4096;

/// Metric codes stored in [`Params::metric`].
pub const METRIC_L2: u8 = 0;
pub const METRIC_INNER_PRODUCT: u8 = 1;
pub const METRIC_COSINE: u8 = 2;

/// Code layouts stored in [`Params::code_layout`]: how one vector's payload sits in an extent.
/// 1 = row-major 8-bit PQ codes (`m` bytes per vector); 2 = 4-bit fast-scan PQ codes in blocks
/// of 32 vectors (`m / 2` bytes per vector, format 1.1). See [`CodeLayout`].
/// `Params::refine`: full vectors kept as little-endian float32, or as the input's bytes.
pub const REFINE_F32: u8 = 1;
pub const REFINE_U8: u8 = 2;

pub const CODE_LAYOUT_PQ8: u8 = 1;
pub const CODE_LAYOUT_PQ4FS: u8 = 2;
/// Raw float32 vectors (`…,Flat`; format 1.3): 4 · d bytes per vector, no codebooks.
pub const CODE_LAYOUT_FLAT: u8 = 3;

/// `v` rounded up to a multiple of `a` (a power of two).
pub const fn align_up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}

/// crc32c (Castagnoli) of `data`; hardware-accelerated where the CPU has it.
pub fn crc32c(data: &[u8]) -> u32 {
    ::crc32c::crc32c(data)
}

/// Whether this library reads files written as `major.minor`: the one place that decides.
pub fn check_version(file: &str, major: u16, minor: u16) -> Result<(), FormatError> {
    if major == FORMAT_MAJOR && minor <= FORMAT_MINOR {
        Ok(())
    } else {
        Err(FormatError::UnsupportedVersion { file: file.to_string(), major, minor })
    }
}

/// Reads `n` little-endian f32 values from `bytes` (exactly 4n long).
pub(crate) fn f32s_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

pub(crate) fn u32s_from_le(bytes: &[u8]) -> Vec<u32> {
    bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

pub(crate) fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    out.reserve(v.len() * 4);
    v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
}

pub(crate) fn put_u32s(out: &mut Vec<u8>, v: &[u32]) {
    out.reserve(v.len() * 4);
    v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
}

/// A cursor over a verified payload that turns a short read into [`FormatError::Truncated`].
pub(crate) struct Cursor<'a> {
    file: &'a str,
    bytes: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Cursor<'a> {
    pub fn new(file: &'a str, bytes: &'a [u8], base: u64) -> Self {
        Cursor { file, bytes, pos: 0, base }
    }

    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FormatError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(FormatError::Truncated {
                file: self.file.to_string(),
                what: what.to_string(),
                offset: self.offset(),
                needed: n as u64,
                available: (self.bytes.len() - self.pos) as u64,
            }),
        }
    }

    pub fn read<T: zerocopy::FromBytes>(&mut self, what: &str) -> Result<T, FormatError> {
        let b = self.take(std::mem::size_of::<T>(), what)?;
        Ok(T::read_from_bytes(b).unwrap_or_else(|_| unreachable!("length checked by take")))
    }

    /// Skips to the next multiple of `a` within the payload.
    pub fn align(&mut self, a: usize, what: &str) -> Result<(), FormatError> {
        let pad = (a - self.pos % a) % a;
        self.take(pad, what).map(|_| ())
    }

    pub fn finish(&self) -> Result<(), FormatError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(FormatError::Invalid {
                file: self.file.to_string(),
                what: "payload".into(),
                offset: self.offset(),
                reason: format!("{} unexpected trailing bytes", self.bytes.len() - self.pos),
            })
        }
    }

    pub fn invalid(&self, what: &str, reason: String) -> FormatError {
        FormatError::Invalid { file: self.file.to_string(), what: what.to_string(), offset: self.offset(), reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_up_rounds_to_pages() {
        assert_eq!(align_up(0, PAGE), 0);
        assert_eq!(align_up(1, PAGE), 4096);
        assert_eq!(align_up(4096, PAGE), 4096);
        assert_eq!(align_up(4097, PAGE), 8192);
    }

    #[test]
    fn versions_newer_than_ours_are_refused() {
        assert!(check_version("f", 1, 0).is_ok());
        assert!(check_version("f", 1, 1).is_ok());
        assert!(check_version("f", 1, 2).is_ok());
        assert!(check_version("f", 1, 3).is_ok());
        assert!(check_version("f", 1, 4).is_ok());
        assert!(check_version("f", 1, 5).is_ok());
        assert!(matches!(check_version("f", 1, 6), Err(FormatError::UnsupportedVersion { .. })));
        assert!(matches!(check_version("f", 2, 0), Err(FormatError::UnsupportedVersion { .. })));
        assert!(matches!(check_version("f", 0, 9), Err(FormatError::UnsupportedVersion { .. })));
    }
}
