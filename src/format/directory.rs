//! The list directory: for every inverted list, the extents that hold it. Lists may have several
//! extents (one per segment that holds part of the list) so that appends add extents instead of
//! rewriting old ones. Extents of list `l` are `extents[list_starts[l]..list_starts[l + 1]]`.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{
    align_up, decode_file, encode_file, put_u32s, u32s_from_le, CodeLayout, Cursor, FileHeader, FileKind, FormatError,
    IdsPlace, HEADER_LEN, PAGE,
};

/// [`DirectoryHeader::flags`] bit 0 (format 1.5): every extent's ids are kept with the vectors
/// ([`IdsPlace::WithVectors`]).
pub const DIRECTORY_IDS_WITH_VECTORS: u64 = 1;

/// Fixed part of the directory payload, 32 bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct DirectoryHeader {
    pub nlist: U32,
    pub n_extents: U32,
    pub n_segments: U32,
    pub code_size: U32,
    pub ntotal: U64,
    /// Bit 0: [`DIRECTORY_IDS_WITH_VECTORS`]; the other bits zero (the 1.0–1.4 `reserved`).
    pub flags: U64,
}

/// Where one piece of one list lives, 32 bytes. `offset` and `length` are multiples of 4096;
/// `crc` is the crc32c of all `length` bytes, padding included.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Extent {
    pub segment: U32,
    pub count: U32,
    pub offset: U64,
    pub length: U64,
    pub crc: U32,
    /// Format 1.2, indexes with full vectors: the page of `vec-NNNNNN.qvv` (NNNNNN = `segment`)
    /// where this extent's vectors begin. 0 otherwise.
    pub vectors_page: U32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directory {
    pub n_segments: u32,
    /// The manifest's code layout, with the header's `code_size` in it.
    pub layout: CodeLayout,
    pub ntotal: u64,
    /// Where the extents' ids are.
    pub ids: IdsPlace,
    /// nlist + 1 entries.
    pub list_starts: Vec<u32>,
    pub extents: Vec<Extent>,
}

impl Directory {
    pub fn nlist(&self) -> usize {
        self.list_starts.len() - 1
    }

    /// What [`super::decode_extent`] needs to know of every extent: the code layout and where
    /// the ids are.
    pub fn shape(&self) -> (CodeLayout, IdsPlace) {
        (self.layout, self.ids)
    }

    pub fn extents_of(&self, list: usize) -> &[Extent] {
        &self.extents[self.list_starts[list] as usize..self.list_starts[list + 1] as usize]
    }

    pub fn encode(&self, index_id: [u8; 16]) -> Vec<u8> {
        let h = DirectoryHeader {
            nlist: (self.nlist() as u32).into(),
            n_extents: (self.extents.len() as u32).into(),
            n_segments: self.n_segments.into(),
            code_size: (self.layout.code_size() as u32).into(),
            ntotal: self.ntotal.into(),
            flags: match self.ids {
                IdsPlace::InExtent => 0,
                IdsPlace::WithVectors => DIRECTORY_IDS_WITH_VECTORS,
            }
            .into(),
        };
        let mut p = h.as_bytes().to_vec();
        put_u32s(&mut p, &self.list_starts);
        p.resize(align_up(p.len() as u64, 8) as usize, 0);
        for e in &self.extents {
            p.extend_from_slice(e.as_bytes());
        }
        encode_file(FileKind::Directory, index_id, &p)
    }

    /// Decodes and checks every invariant a reader relies on: list ranges monotone and in
    /// bounds, extents page-aligned, long enough for their count, in a known segment, and counts
    /// summing to `ntotal`. Whether an extent fits inside its segment file is checked by the
    /// engine, which knows the file sizes. `layout` is the manifest's (the header's `code_size`
    /// must agree with it).
    pub fn decode(file: &str, bytes: &[u8], layout: CodeLayout) -> Result<(Self, FileHeader), FormatError> {
        let (fh, payload) = decode_file(file, FileKind::Directory, bytes)?;
        let mut c = Cursor::new(file, payload, HEADER_LEN as u64);
        let h: DirectoryHeader = c.read("directory header")?;
        let (nlist, n_ext) = (h.nlist.get() as usize, h.n_extents.get() as usize);
        let starts_len =
            (nlist + 1).checked_mul(4).ok_or_else(|| c.invalid("directory header", "nlist overflows".into()))?;
        let list_starts = u32s_from_le(c.take(starts_len, "list starts")?);
        c.align(8, "list start padding")?;
        let ext_bytes = c.take(n_ext.saturating_mul(32), "extent table")?;
        let extents: Vec<Extent> =
            ext_bytes.chunks_exact(32).map(|b| Extent::read_from_bytes(b).unwrap_or_else(|_| unreachable!())).collect();
        c.finish()?;
        if h.code_size.get() as u64 != layout.code_size() {
            return Err(c.invalid(
                "directory header",
                format!("code_size {}, the manifest's layout has {}", h.code_size.get(), layout.code_size()),
            ));
        }
        let ids = match h.flags.get() {
            0 => IdsPlace::InExtent,
            DIRECTORY_IDS_WITH_VECTORS => IdsPlace::WithVectors,
            f => return Err(c.invalid("directory header", format!("unknown flags {f:#x}"))),
        };
        if list_starts[0] != 0 || list_starts.windows(2).any(|w| w[0] > w[1]) || list_starts[nlist] as usize != n_ext {
            return Err(c.invalid("list starts", "not a monotone partition of the extent table".into()));
        }
        let mut total = 0u64;
        for (i, e) in extents.iter().enumerate() {
            let (off, len, count) = (e.offset.get(), e.length.get(), e.count.get() as u64);
            let bad = off % PAGE != 0
                || len % PAGE != 0
                || len < layout.extent_len_in(count, ids)
                || e.segment.get() >= h.n_segments.get();
            if bad {
                return Err(c.invalid(
                    "extent table",
                    format!(
                        "extent {i} (segment {}, offset {off}, length {len}, count {count}) is malformed",
                        e.segment.get()
                    ),
                ));
            }
            total += count;
        }
        if total != h.ntotal.get() {
            return Err(
                c.invalid("extent table", format!("extents hold {total} vectors, header says {}", h.ntotal.get()))
            );
        }
        Ok((Directory { n_segments: h.n_segments.get(), layout, ntotal: total, ids, list_starts, extents }, fh))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(segment: u32, count: u32, offset: u64) -> Extent {
        Extent {
            segment: segment.into(),
            count: count.into(),
            offset: offset.into(),
            length: 4096.into(),
            crc: 5.into(),
            vectors_page: 0.into(),
        }
    }

    fn sample() -> Directory {
        Directory {
            n_segments: 2,
            layout: CodeLayout::RowMajor { code_size: 8 },
            ntotal: 30,
            ids: IdsPlace::InExtent,
            list_starts: vec![0, 1, 1, 3],
            extents: vec![ext(0, 10, 4096), ext(0, 10, 8192), ext(1, 10, 4096)],
        }
    }

    #[test]
    fn round_trip() {
        let d = sample();
        assert_eq!(Directory::decode("d", &d.encode([0; 16]), d.layout).unwrap().0, d);
        assert_eq!(d.extents_of(2).len(), 2);
        assert!(d.extents_of(1).is_empty());
    }

    #[test]
    fn inconsistent_tables_are_rejected() {
        let mut d = sample();
        d.extents[1].offset = 100.into();
        assert!(matches!(Directory::decode("d", &d.encode([0; 16]), d.layout), Err(FormatError::Invalid { .. })));
        let mut d = sample();
        d.list_starts = vec![0, 2, 1, 3];
        assert!(Directory::decode("d", &d.encode([0; 16]), d.layout).is_err());
        let mut d = sample();
        d.extents[0].count = 1000.into();
        assert!(Directory::decode("d", &d.encode([0; 16]), d.layout).is_err());
        let mut d = sample();
        d.extents[2].segment = 2.into();
        assert!(Directory::decode("d", &d.encode([0; 16]), d.layout).is_err());
        let d = sample();
        assert!(Directory::decode("d", &d.encode([0; 16]), CodeLayout::RowMajor { code_size: 4 }).is_err());
        // 10 vectors of 8 bytes fit a page row-major and in blocks of 32 (256 + 80 bytes).
        let blocks = Directory { layout: CodeLayout::Blocks32 { code_size: 8 }, ..sample() };
        assert_eq!(Directory::decode("d", &blocks.encode([0; 16]), blocks.layout).unwrap().0, blocks);
        let mut big = blocks.clone();
        big.extents[0].count = 300.into();
        big.extents[1].count = 300.into();
        big.ntotal = 610;
        // 300 vectors: 10 blocks of 256 bytes + 2400 bytes of ids need two pages.
        assert!(Directory::decode("d", &big.encode([0; 16]), big.layout).is_err());
        // With the ids kept with the vectors, the same 300 vectors' codes fit one page.
        let apart = Directory { ids: IdsPlace::WithVectors, ..big.clone() };
        assert_eq!(Directory::decode("d", &apart.encode([0; 16]), apart.layout).unwrap().0, apart);
    }

    /// The flags round-trip; a bit this version does not define is refused.
    #[test]
    fn flags_round_trip_and_unknown_ones_are_refused() {
        let d = Directory { ids: IdsPlace::WithVectors, ..sample() };
        let mut bytes = d.encode([0; 16]);
        assert_eq!(Directory::decode("d", &bytes, d.layout).unwrap().0.ids, IdsPlace::WithVectors);
        // The flags are payload bytes 24 .. 32; the file's checksum is recomputed so that only
        // the flag is wrong.
        bytes[HEADER_LEN + 24] = 2;
        let bytes = super::super::finish_file(FileKind::Directory, [0; 16], bytes);
        let err = Directory::decode("d", &bytes, d.layout).unwrap_err();
        assert!(err.to_string().contains("unknown flags"), "{err}");
    }
}
