//! Segment files: a 4096-byte header page, then extents, each starting on a 4096-byte boundary.
//! An extent holds one list's vectors: their codes as the index's [`CodeLayout`] arranges them,
//! zero padding to a multiple of 8, `count` little-endian u64 ids, zero padding to a multiple of
//! 4096. Its crc32c covers all of it, padding included, and is checked as soon as the extent
//! arrives from disk. Where the ids are kept with the vectors ([`IdsPlace::WithVectors`], from
//! 1.5), an extent is its codes and the padding alone.

use super::{crc32c, CodeLayout, Extent, FileHeader, FileKind, FormatError, IdsPlace, HEADER_LEN, PAGE};

/// Serialises one extent (padded) into `out`, replacing its contents; returns its crc32c.
/// `codes` is the code area, `layout.codes_len(ids.len())` bytes.
pub fn encode_extent(codes: &[u8], ids: &[u64], layout: CodeLayout, out: &mut Vec<u8>) -> u32 {
    let count = ids.len() as u64;
    debug_assert_eq!(codes.len() as u64, layout.codes_len(count));
    out.clear();
    out.extend_from_slice(codes);
    out.resize(layout.ids_offset(count) as usize, 0);
    ids.iter().for_each(|id| out.extend_from_slice(&id.to_le_bytes()));
    out.resize(layout.extent_len(count) as usize, 0);
    crc32c(out)
}

/// Serialises the codes of an extent whose ids are kept with its vectors
/// ([`IdsPlace::WithVectors`]), padded to a page, into `out`; returns its crc32c.
pub fn encode_codes_extent(codes: &[u8], count: u64, layout: CodeLayout, out: &mut Vec<u8>) -> u32 {
    debug_assert_eq!(codes.len() as u64, layout.codes_len(count));
    out.clear();
    out.extend_from_slice(codes);
    out.resize(layout.extent_len_in(count, IdsPlace::WithVectors) as usize, 0);
    crc32c(out)
}

/// A verified extent, borrowed from the buffer it was read into.
pub struct ExtentView<'a> {
    /// The code area, as the layout arranges it (whole blocks for `Blocks32`).
    pub codes: &'a [u8],
    pub count: usize,
    /// `8 · count` bytes, or none where the ids are kept with the vectors and were not read.
    ids: &'a [u8],
}

impl<'a> ExtentView<'a> {
    /// The same extent with its ids, read from where they are kept (`ids`: `8 · count` bytes).
    pub fn with_ids(self, ids: &'a [u8]) -> Self {
        debug_assert_eq!(ids.len(), 8 * self.count);
        ExtentView { ids, ..self }
    }

    /// Whether the view holds its ids.
    pub fn has_ids(&self) -> bool {
        self.ids.len() == 8 * self.count
    }

    pub fn ids(&self) -> impl Iterator<Item = u64> + 'a {
        self.ids.as_chunks::<8>().0.iter().map(|b| u64::from_le_bytes(*b))
    }

    /// The id of vector `i` (a scan asks only for the few that enter its top-k).
    #[inline]
    pub fn id(&self, i: usize) -> u64 {
        u64::from_le_bytes(self.ids.as_chunks::<8>().0[i])
    }
}

/// Checks an extent's bytes against its directory entry and splits it into codes and ids.
pub fn decode_extent<'a>(
    file: &str,
    e: &Extent,
    (layout, ids): (CodeLayout, IdsPlace),
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
    let count = e.count.get() as u64;
    let need = layout.extent_len_in(count, ids);
    if need > len {
        return Err(FormatError::Invalid {
            file: file.into(),
            what: "extent".into(),
            offset: e.offset.get(),
            reason: format!("{count} vectors need {need} bytes, the extent has {len}"),
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
    Ok(extent_view(e, (layout, ids), bytes))
}

/// The codes and ids of an extent whose bytes were verified by [`decode_extent`] when they
/// were read (a cache keeps them verified); `bytes` must be the extent's whole length. Where
/// the ids are kept with the vectors, the view has none ([`ExtentView::with_ids`] adds them).
pub fn extent_view<'a>(e: &Extent, (layout, ids): (CodeLayout, IdsPlace), bytes: &'a [u8]) -> ExtentView<'a> {
    let count = e.count.get() as u64;
    let codes = &bytes[..layout.codes_len(count) as usize];
    match ids {
        IdsPlace::InExtent => {
            let io = layout.ids_offset(count) as usize;
            ExtentView { codes, count: count as usize, ids: &bytes[io..io + 8 * count as usize] }
        }
        IdsPlace::WithVectors => ExtentView { codes, count: count as usize, ids: &[] },
    }
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
        let row = CodeLayout::RowMajor { code_size: 3 };
        let crc = encode_extent(&codes, &ids, row, &mut buf);
        assert_eq!(buf.len(), 4096);
        assert_eq!(row.ids_offset(5), 16);
        let e = Extent {
            segment: 0.into(),
            count: 5.into(),
            offset: 4096.into(),
            length: 4096.into(),
            crc: crc.into(),
            vectors_page: 0.into(),
        };
        let v = decode_extent("s", &e, (row, IdsPlace::InExtent), &buf).unwrap();
        assert_eq!(v.codes, &codes[..]);
        assert_eq!(v.ids().collect::<Vec<_>>(), ids);
    }

    /// Layout 2: 40 vectors of 4 bytes fill two blocks (256 bytes, the last 24 vectors' codes
    /// zero), the ids follow at 256; a flipped byte anywhere is a checksum error.
    #[test]
    fn block_extent_round_trip_and_corruption() {
        let blocks = CodeLayout::Blocks32 { code_size: 4 };
        let mut codes: Vec<u8> = (0..256).map(|i| (i % 251) as u8).collect();
        codes[160..].iter_mut().for_each(|b| *b = 0);
        let ids: Vec<u64> = (100..140).collect();
        let mut buf = Vec::new();
        let crc = encode_extent(&codes, &ids, blocks, &mut buf);
        assert_eq!(buf.len(), 4096);
        assert_eq!(&buf[256..264], &100u64.to_le_bytes());
        let e = one_page(40, crc);
        let v = decode_extent("s", &e, (blocks, IdsPlace::InExtent), &buf).unwrap();
        assert_eq!((v.codes, v.count), (&codes[..], 40));
        assert_eq!(v.ids().collect::<Vec<_>>(), ids);
        for at in [3, 200, 300, 4095] {
            let mut bad = buf.clone();
            bad[at] ^= 0x10;
            assert!(matches!(
                decode_extent("s", &e, (blocks, IdsPlace::InExtent), &bad),
                Err(FormatError::ChecksumMismatch { .. })
            ));
        }
    }

    /// The directory entry of a one-page extent of `count` vectors at offset 4096.
    fn one_page(count: u32, crc: u32) -> Extent {
        Extent {
            segment: 0.into(),
            count: count.into(),
            offset: 4096.into(),
            length: 4096.into(),
            crc: crc.into(),
            vectors_page: 0.into(),
        }
    }

    /// Ids kept with the vectors: the extent is the codes and zero padding to a page; the view
    /// has no ids until they are handed to it; a flipped byte is a checksum error, and an
    /// extent shorter than the codes is refused.
    #[test]
    fn codes_only_extent_round_trip_and_corruption() {
        let blocks = CodeLayout::Blocks32 { code_size: 4 };
        let codes: Vec<u8> = (0..256).map(|i| (i % 251) as u8).collect();
        let mut buf = Vec::new();
        let crc = encode_codes_extent(&codes, 40, blocks, &mut buf);
        assert_eq!(buf.len(), 4096);
        assert!(buf[256..].iter().all(|&b| b == 0));
        let e = one_page(40, crc);
        let shape = (blocks, IdsPlace::WithVectors);
        let v = decode_extent("s", &e, shape, &buf).unwrap();
        assert_eq!((v.codes, v.count, v.has_ids()), (&codes[..], 40, false));
        let ids: Vec<u8> = (100u64..140).flat_map(|i| i.to_le_bytes()).collect();
        let v = v.with_ids(&ids);
        assert!(v.has_ids());
        assert_eq!(v.ids().collect::<Vec<_>>(), (100..140).collect::<Vec<u64>>());
        assert_eq!(v.id(39), 139);
        for at in [0, 255, 256, 4095] {
            let mut bad = buf.clone();
            bad[at] ^= 1;
            assert!(matches!(decode_extent("s", &e, shape, &bad), Err(FormatError::ChecksumMismatch { .. })));
        }
        let many = Extent { count: 2_000.into(), ..e };
        assert!(matches!(decode_extent("s", &many, shape, &buf), Err(FormatError::Invalid { .. })));
    }

    #[test]
    fn flipped_padding_byte_is_a_checksum_error() {
        let mut buf = Vec::new();
        let row = CodeLayout::RowMajor { code_size: 2 };
        let crc = encode_extent(&[1, 2], &[9], row, &mut buf);
        buf[4000] = 1;
        let e = Extent {
            segment: 0.into(),
            count: 1.into(),
            offset: 0.into(),
            length: 4096.into(),
            crc: crc.into(),
            vectors_page: 0.into(),
        };
        assert!(matches!(
            decode_extent("s", &e, (row, IdsPlace::InExtent), &buf),
            Err(FormatError::ChecksumMismatch { .. })
        ));
        assert!(matches!(
            decode_extent("s", &e, (row, IdsPlace::InExtent), &buf[..100]),
            Err(FormatError::Truncated { .. })
        ));
    }

    /// A record claiming more vectors than its bytes hold is refused, not sliced past its end,
    /// whatever the count and code size (found by `cargo fuzz run format_payloads`).
    #[test]
    fn a_record_larger_than_its_bytes_is_refused() {
        let bytes = [0u8; 4096];
        for (count, code_size) in [(1u32, 8192u32), (u32::MAX, u32::MAX), (600, 8)] {
            for layout in [CodeLayout::RowMajor { code_size }, CodeLayout::Blocks32 { code_size }] {
                let e = Extent {
                    segment: 0.into(),
                    count: count.into(),
                    offset: 4096.into(),
                    length: 4096.into(),
                    crc: crc32c(&bytes).into(),
                    vectors_page: 0.into(),
                };
                let err = decode_extent("s", &e, (layout, IdsPlace::InExtent), &bytes).err().expect("refused");
                assert!(err.to_string().contains("need"), "{err}");
            }
        }
    }

    #[test]
    fn header_page_decodes() {
        let p = segment_header_page([1; 16], 8192, 42);
        let h = FileHeader::decode("s", FileKind::Segment, &p).unwrap();
        assert_eq!((h.payload_offset.get(), h.payload_len.get(), h.payload_crc.get()), (4096, 8192, 42));
    }
}
