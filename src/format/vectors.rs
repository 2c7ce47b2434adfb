//! Vectors files (format 1.2, `,RFlat` indexes): the full vectors of one segment's extents, for
//! re-ranking. `vec-NNNNNN.qvv` pairs with `seg-NNNNNN.qvs`: a header page, then data pages
//! holding each extent's vectors in the extent's order, packed back to back from the page its
//! directory entry names (`vectors_page`; a vector may straddle two pages), then a table of one
//! crc32c per data page. A search reads only the pages that hold its candidates and checks each
//! against the table, which is read whole at open (4 bytes per 4 KiB). From 1.5 an index may
//! keep its ids here instead of in the extents ([`super::IdsPlace::WithVectors`]): each vector
//! is then followed by its id, and each extent's records by a block of its ids from a fresh page.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::paged::{self, PageTable};
use super::{crc32c, FileHeader, FileKind, FormatError, HEADER_LEN, PAGE};

/// The vectors file's own header, at byte 64 of its header page, 40 bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct VectorsHeader {
    pub dim: U32,
    /// [`super::REFINE_F32`] or [`super::REFINE_U8`], as the manifest's `refine`.
    pub elem: u8,
    pub reserved0: [u8; 3],
    /// Bytes per vector: 4 · dim (float32) or dim (u8).
    pub vector_bytes: U32,
    /// crc32c of the page table's `4 · n_pages` bytes.
    pub table_crc: U32,
    pub n_pages: U64,
    pub n_vectors: U64,
    /// Bytes per record (format 1.5): `vector_bytes` (the vector alone), or `vector_bytes + 8`
    /// (the vector, then its id as a little-endian u64). 0 in files before 1.5: the vector alone.
    pub record_bytes: U32,
    /// crc32c of this header's first 36 bytes.
    pub header_crc: U32,
}

/// A vectors file as a reader holds it: its header and the crc32c of every data page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VectorsFile {
    pub header: VectorsHeader,
    pub pages: PageTable,
}

impl VectorsHeader {
    /// `with_ids`: each vector followed by its id, and every extent's ids in a block after its
    /// records.
    pub fn new(
        dim: u32,
        elem: u8,
        vector_bytes: u32,
        with_ids: bool,
        n_pages: u64,
        n_vectors: u64,
        table_crc: u32,
    ) -> Self {
        let mut h = VectorsHeader {
            dim: dim.into(),
            elem,
            reserved0: [0; 3],
            vector_bytes: vector_bytes.into(),
            table_crc: table_crc.into(),
            n_pages: n_pages.into(),
            n_vectors: n_vectors.into(),
            record_bytes: (vector_bytes + if with_ids { 8 } else { 0 }).into(),
            header_crc: 0.into(),
        };
        h.header_crc = crc32c(&h.as_bytes()[..36]).into();
        h
    }
}

impl VectorsHeader {
    /// Bytes from one vector to the next.
    pub fn record_bytes(&self) -> u64 {
        match self.record_bytes.get() {
            0 => self.vector_bytes.get() as u64,
            r => r as u64,
        }
    }

    /// Whether each vector is followed by its id (and each extent's records by its ids).
    pub fn ids_with_vectors(&self) -> bool {
        self.record_bytes() != self.vector_bytes.get() as u64
    }

    /// Data pages one extent of `count` vectors takes: its records, then (with ids) its block
    /// of ids from a fresh page.
    pub fn extent_pages(&self, count: u64) -> u64 {
        let records = count.saturating_mul(self.record_bytes()).div_ceil(PAGE);
        if self.ids_with_vectors() {
            records.saturating_add(count.saturating_mul(8).div_ceil(PAGE))
        } else {
            records
        }
    }

    /// Where the block of ids of an extent of `count` vectors whose records begin at data page
    /// `vectors_page` lies: its first data page and its length in bytes (`8 · count`). Only for
    /// files that keep ids.
    pub fn ids_block(&self, vectors_page: u64, count: u64) -> (u64, u64) {
        (vectors_page + count.saturating_mul(self.record_bytes()).div_ceil(PAGE), count.saturating_mul(8))
    }
}

impl VectorsFile {
    /// Byte offset of data page `page` (0-based).
    pub const fn page_offset(page: u64) -> u64 {
        paged::page_offset(page)
    }

    /// Where the page table starts, and its length (padded to a page).
    pub const fn table_span(n_pages: u64) -> (u64, u64) {
        paged::table_span(n_pages)
    }

    /// The whole file's length.
    pub const fn file_len(n_pages: u64) -> u64 {
        paged::file_len(n_pages)
    }

    /// The header page: the file header (payload = data pages and table, `payload_crc` over
    /// them) and the vectors header.
    pub fn header_page(index_id: [u8; 16], h: &VectorsHeader, payload_crc: u32) -> Vec<u8> {
        let n = h.n_pages.get();
        let payload_len = Self::file_len(n) - PAGE;
        let fh = FileHeader::with_crc(FileKind::Vectors, index_id, PAGE, payload_len, payload_crc);
        let mut page = vec![0u8; PAGE as usize];
        page[..HEADER_LEN].copy_from_slice(fh.as_bytes());
        page[HEADER_LEN..HEADER_LEN + size_of::<VectorsHeader>()].copy_from_slice(h.as_bytes());
        page
    }

    /// The page table's bytes, padded to a page.
    pub fn encode_table(crcs: &[u32]) -> Vec<u8> {
        paged::encode_table(crcs)
    }

    /// Checks the header page of `file` (its file header, kind, version and the vectors
    /// header's own checksum); returns both headers.
    pub fn decode_head(file: &str, page: &[u8]) -> Result<(FileHeader, VectorsHeader), FormatError> {
        let need = HEADER_LEN + size_of::<VectorsHeader>();
        if page.len() < need {
            return Err(FormatError::Truncated {
                file: file.into(),
                what: "vectors header".into(),
                offset: 0,
                needed: need as u64,
                available: page.len() as u64,
            });
        }
        let fh = FileHeader::decode(file, FileKind::Vectors, &page[..HEADER_LEN])?;
        let Ok(h) = VectorsHeader::read_from_bytes(&page[HEADER_LEN..need]) else {
            unreachable!("the slice has the header's size")
        };
        let invalid = |reason: String| FormatError::Invalid {
            file: file.into(),
            what: "vectors header".into(),
            offset: HEADER_LEN as u64,
            reason,
        };
        let computed = crc32c(&h.as_bytes()[..36]);
        if computed != h.header_crc.get() {
            return Err(FormatError::ChecksumMismatch {
                file: file.into(),
                what: "vectors header".into(),
                offset: HEADER_LEN as u64,
                len: 36,
                stored: h.header_crc.get(),
                computed,
            });
        }
        let per = match h.elem {
            super::REFINE_F32 => 4,
            super::REFINE_U8 => 1,
            e => return Err(invalid(format!("unknown element type {e}"))),
        };
        if h.dim.get() == 0 || h.vector_bytes.get() != per * h.dim.get() {
            return Err(invalid(format!("{} bytes per vector for dimension {}", h.vector_bytes.get(), h.dim.get())));
        }
        if h.reserved0 != [0; 3] {
            return Err(invalid("a reserved field is not zero".into()));
        }
        let r = h.record_bytes.get();
        if r != 0 && r != h.vector_bytes.get() && r != h.vector_bytes.get() + 8 {
            return Err(invalid(format!("{r} bytes per record for {} bytes per vector", h.vector_bytes.get())));
        }
        let n = h.n_pages.get();
        if n > u32::MAX as u64 || fh.payload_offset.get() != PAGE || fh.payload_len.get() != Self::file_len(n) - PAGE {
            return Err(invalid(format!("{n} data pages do not match a payload of {} bytes", fh.payload_len.get())));
        }
        if h.n_vectors.get().saturating_mul(h.record_bytes()) > n * PAGE {
            return Err(invalid(format!("{} vectors cannot fit in {n} pages", h.n_vectors.get())));
        }
        Ok((fh, h))
    }

    /// Decodes the page table read from [`table_span`](Self::table_span), checked against
    /// the header.
    pub fn decode(file: &str, h: VectorsHeader, table: &[u8]) -> Result<VectorsFile, FormatError> {
        let pages = PageTable::decode(file, h.n_pages.get(), h.table_crc.get(), table)?;
        Ok(VectorsFile { header: h, pages })
    }

    /// Checks data page `page` (its 4096 bytes) against the table.
    pub fn check_page(&self, file: &str, page: u64, bytes: &[u8]) -> Result<(), FormatError> {
        self.pages.check_page(file, "vectors", page, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let data: Vec<u8> = (0..3 * PAGE).map(|i| (i * 7 % 251) as u8).collect();
        let crcs: Vec<u32> = data.chunks(PAGE as usize).map(crc32c).collect();
        let table = VectorsFile::encode_table(&crcs);
        let h = VectorsHeader::new(100, super::super::REFINE_F32, 400, false, 3, 30, crc32c(&table[..12]));
        let mut payload = data.clone();
        payload.extend_from_slice(&table);
        let head = VectorsFile::header_page([5; 16], &h, crc32c(&payload));
        (head, data, table)
    }

    #[test]
    fn round_trip() {
        let (head, data, table) = sample();
        let (fh, h) = VectorsFile::decode_head("v", &head).unwrap();
        assert_eq!(fh.index_id, [5; 16]);
        assert_eq!((h.dim.get(), h.n_pages.get(), h.n_vectors.get()), (100, 3, 30));
        assert_eq!(VectorsFile::table_span(3), (4 * PAGE, PAGE));
        let f = VectorsFile::decode("v", h, &table).unwrap();
        for (p, page) in data.chunks(PAGE as usize).enumerate() {
            f.check_page("v", p as u64, page).unwrap();
        }
    }

    /// Records with ids (1.5): 408 bytes each; 20 vectors take two pages of records and one of
    /// ids after them; a record size that is neither the vector's nor the vector's and an id's
    /// is refused; a header from before 1.5 (record_bytes 0) reads as vectors alone.
    #[test]
    fn records_with_ids_and_their_blocks() {
        let h = VectorsHeader::new(100, super::super::REFINE_F32, 400, true, 3, 20, 0);
        assert_eq!((h.record_bytes(), h.ids_with_vectors()), (408, true));
        assert_eq!(h.extent_pages(20), 3);
        assert_eq!(h.ids_block(7, 20), (9, 160));
        assert_eq!(h.extent_pages(0), 0);
        let plain = VectorsHeader::new(100, super::super::REFINE_F32, 400, false, 3, 20, 0);
        assert_eq!((plain.record_bytes(), plain.ids_with_vectors(), plain.extent_pages(20)), (400, false, 2));
        let old = VectorsHeader { record_bytes: 0.into(), ..plain };
        assert_eq!((old.record_bytes(), old.ids_with_vectors()), (400, false));
        let table = VectorsFile::encode_table(&[0; 3]);
        for (r, ok) in [(0u32, true), (400, true), (408, true), (404, false), (800, false)] {
            let mut h = VectorsHeader { record_bytes: r.into(), table_crc: crc32c(&table[..12]).into(), ..h };
            h.header_crc = crc32c(&h.as_bytes()[..36]).into();
            let head = VectorsFile::header_page([5; 16], &h, 0);
            assert_eq!(VectorsFile::decode_head("v", &head).is_ok(), ok, "record_bytes {r}");
        }
    }

    #[test]
    fn corruption_is_caught() {
        let (head, data, table) = sample();
        let (_, h) = VectorsFile::decode_head("v", &head).unwrap();
        let f = VectorsFile::decode("v", h, &table).unwrap();
        let mut page = data[..PAGE as usize].to_vec();
        page[100] ^= 1;
        let e = f.check_page("v", 0, &page).unwrap_err().to_string();
        assert!(e.contains("vectors page 0"), "{e}");
        assert!(f.check_page("v", 3, &data[..PAGE as usize]).is_err(), "a page past the table");
        let mut bad = head.clone();
        bad[HEADER_LEN + 16] ^= 1;
        assert!(VectorsFile::decode_head("v", &bad).is_err(), "vectors header checksum");
        let mut bad = table.clone();
        bad[1] ^= 1;
        assert!(VectorsFile::decode("v", h, &bad).is_err(), "page table checksum");
        assert!(VectorsFile::decode("v", h, &table[..100]).is_err(), "short page table");
        assert!(VectorsFile::decode_head("v", &head[..80]).is_err(), "short header page");
    }

    /// Damaged or arbitrary bytes give an error, never a panic: every single-byte change of a
    /// header page, and random pages and tables.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let (head, _, table) = sample();
        for i in 0..HEADER_LEN + size_of::<VectorsHeader>() {
            let mut bad = head.clone();
            bad[i] ^= 0x5A;
            assert!(VectorsFile::decode_head("v", &bad).is_err(), "byte {i}");
        }
        // A small generator of its own: the format layer depends on nothing above it.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut byte = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        for len in [0, 10, 64, 104, 4096] {
            let page: Vec<u8> = (0..len).map(|_| byte()).collect();
            assert!(VectorsFile::decode_head("v", &page).is_err());
        }
        let (_, h) = VectorsFile::decode_head("v", &head).unwrap();
        for len in [0, 12, 4095, 4096, 8192] {
            let t: Vec<u8> = (0..len).map(|_| byte()).collect();
            let _ = VectorsFile::decode("v", h, &t);
        }
        let f = VectorsFile::decode("v", h, &table).unwrap();
        assert!(f.check_page("v", u64::MAX, &[0; 4096]).is_err());
        assert!(f.check_page("v", 0, &[0; 100]).is_err());
    }
}
