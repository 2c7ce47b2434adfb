//! Segment files: a 4096-byte header page, then extents, each starting on a 4096-byte boundary.
//! An extent holds one list's vectors: `count × code_size` code bytes, zero padding to a multiple
//! of 8, `count` little-endian u64 ids, zero padding to a multiple of 4096. Its crc32c covers all
//! of it, padding included, and is checked as soon as the extent arrives from disk.

use super::{align_up, crc32c, Extent, FileHeader, FileKind, FormatError, HEADER_LEN, PAGE};

/// Offset of the ids inside an extent.
pub const fn ids_offset(count: u64, code_size: u64) -> u64 {
    align_up(count * code_size, 8)
}

/// Bytes an extent of `count` vectors occupies on disk.
pub const fn extent_len(count: u64, code_size: u64) -> u64 {
    align_up(ids_offset(count, code_size) + 8 * count, PAGE)
}

/// Serialises one extent (padded) into `out`, replacing its contents; returns its crc32c.
pub fn encode_extent(codes: &[u8], ids: &[u64], code_size: usize, out: &mut Vec<u8>) -> u32 {
    debug_assert_eq!(codes.len(), ids.len() * code_size);
    let count = ids.len() as u64;
    out.clear();
    out.extend_from_slice(codes);
    out.resize(ids_offset(count, code_size as u64) as usize, 0);
    ids.iter().for_each(|id| out.extend_from_slice(&id.to_le_bytes()));
    out.resize(extent_len(count, code_size as u64) as usize, 0);
    crc32c(out)
}

/// A verified extent, borrowed from the buffer it was read into.
pub struct ExtentView<'a> {
    pub codes: &'a [u8],
    ids: &'a [u8],
}

impl<'a> ExtentView<'a> {
    pub fn ids(&self) -> impl Iterator<Item = u64> + 'a {
        self.ids.chunks_exact(8).map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }
}

/// Checks an extent's bytes against its directory entry and splits it into codes and ids.
pub fn decode_extent<'a>(
    file: &str,
    e: &Extent,
    code_size: usize,
    bytes: &'a [u8],
) -> Result<ExtentView<'a>, FormatError> {
    let len = e.length.get();
    if bytes.len() as u64 != len {
        return Err(FormatError::Truncated {
            file: file.into(),
            what: "extent".into(),
            offset: e.offset.get(),
            needed: len,
            available: bytes.len() as u64,
        });
    }
    let computed = crc32c(bytes);
    if computed != e.crc.get() {
        return Err(FormatError::ChecksumMismatch {
            file: file.into(),
            what: "extent".into(),
            offset: e.offset.get(),
            len,
            stored: e.crc.get(),
            computed,
        });
    }
    Ok(extent_view(e, code_size, bytes))
}

/// The codes and ids of an extent whose bytes were verified by [`decode_extent`] when they
/// were read (a cache keeps them verified); `bytes` must be the extent's whole length.
pub fn extent_view<'a>(e: &Extent, code_size: usize, bytes: &'a [u8]) -> ExtentView<'a> {
    let count = e.count.get() as usize;
    let io = ids_offset(count as u64, code_size as u64) as usize;
    ExtentView { codes: &bytes[..count * code_size], ids: &bytes[io..io + 8 * count] }
}

/// The first page of a segment: its header (payload = the extent area after this page), zeros.
pub fn segment_header_page(index_id: [u8; 16], area_len: u64, area_crc: u32) -> Vec<u8> {
    let mut page = vec![0u8; PAGE as usize];
    let h = FileHeader::with_crc(FileKind::Segment, index_id, PAGE, area_len, area_crc);
    page[..HEADER_LEN].copy_from_slice(zerocopy::IntoBytes::as_bytes(&h));
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extent_round_trip_and_layout() {
        let codes: Vec<u8> = (0..15).collect();
        let ids = [7u64, 1 << 40, 3, 4, 5];
        let mut buf = Vec::new();
        let crc = encode_extent(&codes, &ids, 3, &mut buf);
        assert_eq!(buf.len(), 4096);
        assert_eq!(ids_offset(5, 3), 16);
        let e = Extent {
            segment: 0.into(),
            count: 5.into(),
            offset: 4096.into(),
            length: 4096.into(),
            crc: crc.into(),
            reserved: 0.into(),
        };
        let v = decode_extent("s", &e, 3, &buf).unwrap();
        assert_eq!(v.codes, &codes[..]);
        assert_eq!(v.ids().collect::<Vec<_>>(), ids);
    }

    #[test]
    fn flipped_padding_byte_is_a_checksum_error() {
        let mut buf = Vec::new();
        let crc = encode_extent(&[1, 2], &[9], 2, &mut buf);
        buf[4000] = 1;
        let e = Extent {
            segment: 0.into(),
            count: 1.into(),
            offset: 0.into(),
            length: 4096.into(),
            crc: crc.into(),
            reserved: 0.into(),
        };
        assert!(matches!(decode_extent("s", &e, 2, &buf), Err(FormatError::ChecksumMismatch { .. })));
        assert!(matches!(decode_extent("s", &e, 2, &buf[..100]), Err(FormatError::Truncated { .. })));
    }

    #[test]
    fn header_page_decodes() {
        let p = segment_header_page([1; 16], 8192, 42);
        let h = FileHeader::decode("s", FileKind::Segment, &p).unwrap();
        assert_eq!((h.payload_offset.get(), h.payload_len.get(), h.payload_crc.get()), (4096, 8192, 42));
    }
}
