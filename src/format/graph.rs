//! The graph file (format 1.3, `HNSW{M},Flat`): the HNSW adjacency over every vector of the
//! index, laid out so that a reader can map it and use it in place. `graph.qvg`: a header
//! page, the neighbour slots (u32, node by node, level 0 first) from data page 0, each node's
//! top level (one byte) from the next page boundary, then the page table of a paged file.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::paged::{self, PageTable};
use super::{crc32c, FileHeader, FileKind, FormatError, HEADER_LEN, PAGE};

/// The graph file's own header, at byte 64 of its header page, 56 bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct GraphHeader {
    pub n_nodes: U64,
    /// Neighbour slots stored: Σ over nodes of 2·M + level·M.
    pub n_slots: U64,
    /// Data page where the levels start: ⌈4 · n_slots / 4096⌉.
    pub levels_page: U64,
    /// Data pages: `levels_page` + ⌈n_nodes / 4096⌉.
    pub n_pages: U64,
    /// HNSW M: links per node on levels ≥ 1, 2·M on level 0.
    pub m: U32,
    pub entry_point: U32,
    pub max_level: U32,
    /// crc32c of the page table's `4 · n_pages` bytes.
    pub table_crc: U32,
    pub reserved: U32,
    /// crc32c of this header's first 52 bytes.
    pub header_crc: U32,
}

/// Bytes of [`GraphHeader`] its own checksum covers.
const COVERED: usize = 52;

/// Largest node count: ids are u32 and `u32::MAX` marks an empty slot.
pub const MAX_GRAPH_NODES: u64 = u32::MAX as u64 - 1;

impl GraphHeader {
    /// The header of a graph of `n_nodes` nodes and `n_slots` slots; the page counts follow.
    pub fn new(n_nodes: u64, n_slots: u64, m: u32, entry_point: u32, max_level: u32, table_crc: u32) -> Self {
        let levels_page = Self::levels_page_for(n_slots);
        let mut h = GraphHeader {
            n_nodes: n_nodes.into(),
            n_slots: n_slots.into(),
            levels_page: levels_page.into(),
            n_pages: (levels_page + n_nodes.div_ceil(PAGE)).into(),
            m: m.into(),
            entry_point: entry_point.into(),
            max_level: max_level.into(),
            table_crc: table_crc.into(),
            reserved: 0.into(),
            header_crc: 0.into(),
        };
        h.header_crc = crc32c(&h.as_bytes()[..COVERED]).into();
        h
    }

    /// First data page of the levels, after `n_slots` four-byte slots.
    pub const fn levels_page_for(n_slots: u64) -> u64 {
        (4 * n_slots).div_ceil(PAGE)
    }
}

/// A graph file as a reader holds it before the data: its header and page table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphFile {
    pub header: GraphHeader,
    pub pages: PageTable,
}

impl GraphFile {
    /// The header page: the file header (payload = data pages and table, `payload_crc` over
    /// them) and the graph header.
    pub fn header_page(index_id: [u8; 16], h: &GraphHeader, payload_crc: u32) -> Vec<u8> {
        let payload_len = paged::file_len(h.n_pages.get()) - PAGE;
        let fh = FileHeader::with_crc(FileKind::Graph, index_id, PAGE, payload_len, payload_crc);
        let mut page = vec![0u8; PAGE as usize];
        page[..HEADER_LEN].copy_from_slice(fh.as_bytes());
        page[HEADER_LEN..HEADER_LEN + size_of::<GraphHeader>()].copy_from_slice(h.as_bytes());
        page
    }

    /// Checks the header page of `file` (file header, kind, version, the graph header's own
    /// checksum and the agreement of its counts); returns both headers.
    pub fn decode_head(file: &str, page: &[u8]) -> Result<(FileHeader, GraphHeader), FormatError> {
        let need = HEADER_LEN + size_of::<GraphHeader>();
        if page.len() < need {
            return Err(FormatError::Truncated {
                file: file.into(),
                what: "graph header".into(),
                offset: 0,
                needed: need as u64,
                available: page.len() as u64,
            });
        }
        let fh = FileHeader::decode(file, FileKind::Graph, &page[..HEADER_LEN])?;
        let Ok(h) = GraphHeader::read_from_bytes(&page[HEADER_LEN..need]) else {
            unreachable!("the slice has the header's size")
        };
        let computed = crc32c(&h.as_bytes()[..COVERED]);
        if computed != h.header_crc.get() {
            return Err(FormatError::ChecksumMismatch {
                file: file.into(),
                what: "graph header".into(),
                offset: HEADER_LEN as u64,
                len: COVERED as u64,
                stored: h.header_crc.get(),
                computed,
            });
        }
        let invalid = |reason: String| FormatError::Invalid {
            file: file.into(),
            what: "graph header".into(),
            offset: HEADER_LEN as u64,
            reason,
        };
        let (n, slots, m) = (h.n_nodes.get(), h.n_slots.get(), h.m.get() as u64);
        if n > MAX_GRAPH_NODES || !(2..=4096).contains(&m) || h.reserved.get() != 0 {
            return Err(invalid(format!("{n} nodes with M = {m} (reserved {})", h.reserved.get())));
        }
        // Each node owns 2·M slots and M more per level above 0 (levels fit a byte).
        if slots < n.saturating_mul(2 * m) || slots > n.saturating_mul(2 * m + 255 * m) {
            return Err(invalid(format!("{slots} neighbour slots cannot belong to {n} nodes with M = {m}")));
        }
        if (n > 0 && h.entry_point.get() as u64 >= n) || h.max_level.get() > 255 {
            return Err(invalid(format!(
                "entry point {} or top level {} out of range",
                h.entry_point.get(),
                h.max_level.get()
            )));
        }
        let levels_page = GraphHeader::levels_page_for(slots);
        let pages = levels_page + n.div_ceil(PAGE);
        if h.levels_page.get() != levels_page || h.n_pages.get() != pages {
            return Err(invalid(format!(
                "levels at page {} of {} do not follow from {slots} slots and {n} nodes",
                h.levels_page.get(),
                h.n_pages.get()
            )));
        }
        if fh.payload_offset.get() != PAGE || fh.payload_len.get() != paged::file_len(pages) - PAGE {
            return Err(invalid(format!(
                "{pages} data pages do not match a payload of {} bytes",
                fh.payload_len.get()
            )));
        }
        Ok((fh, h))
    }

    /// Decodes the page table read from [`paged::table_span`], checked against the header.
    pub fn decode(file: &str, h: GraphHeader, table: &[u8]) -> Result<GraphFile, FormatError> {
        let pages = PageTable::decode(file, h.n_pages.get(), h.table_crc.get(), table)?;
        Ok(GraphFile { header: h, pages })
    }

    /// Checks data page `page` (its 4096 bytes) against the table.
    pub fn check_page(&self, file: &str, page: u64, bytes: &[u8]) -> Result<(), FormatError> {
        self.pages.check_page(file, "graph", page, bytes)
    }

    /// The byte range of the neighbour slots and of the levels within the data (offsets from
    /// data page 0).
    pub fn slots_and_levels(&self) -> (std::ops::Range<u64>, std::ops::Range<u64>) {
        let h = &self.header;
        let levels_at = h.levels_page.get() * PAGE;
        (0..4 * h.n_slots.get(), levels_at..levels_at + h.n_nodes.get())
    }

    /// The data pages of a graph: `slots` (little-endian u32) padded to a page, then `levels`
    /// padded to a page.
    pub fn encode_data(slots: &[u32], levels: &[u8]) -> Vec<u8> {
        let mut data = Vec::with_capacity(4 * slots.len() + levels.len() + 2 * PAGE as usize);
        super::put_u32s(&mut data, slots);
        data.resize((data.len() as u64).next_multiple_of(PAGE) as usize, 0);
        data.extend_from_slice(levels);
        data.resize((data.len() as u64).next_multiple_of(PAGE) as usize, 0);
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two nodes, M = 2: node 0 on level 1 (4 + 2 slots), node 1 on level 0 (4 slots).
    fn sample() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let slots = [1, EMPTY, EMPTY, EMPTY, 1, EMPTY, 0, EMPTY, EMPTY, EMPTY];
        let data = GraphFile::encode_data(&slots, &[1, 0]);
        let crcs: Vec<u32> = data.chunks(PAGE as usize).map(crc32c).collect();
        let table = paged::encode_table(&crcs);
        let h = GraphHeader::new(2, slots.len() as u64, 2, 0, 1, crc32c(&table[..4 * crcs.len()]));
        let mut payload = data.clone();
        payload.extend_from_slice(&table);
        (GraphFile::header_page([7; 16], &h, crc32c(&payload)), data, table)
    }

    const EMPTY: u32 = u32::MAX;

    #[test]
    fn round_trip() {
        let (head, data, table) = sample();
        let (fh, h) = GraphFile::decode_head("g", &head).unwrap();
        assert_eq!(fh.index_id, [7; 16]);
        assert_eq!((h.n_nodes.get(), h.n_slots.get(), h.levels_page.get(), h.n_pages.get()), (2, 10, 1, 2));
        let f = GraphFile::decode("g", h, &table).unwrap();
        for (p, page) in data.chunks(PAGE as usize).enumerate() {
            f.check_page("g", p as u64, page).unwrap();
        }
        let (slots, levels) = f.slots_and_levels();
        assert_eq!(super::super::u32s_from_le(&data[slots.start as usize..slots.end as usize])[6], 0);
        assert_eq!(&data[levels.start as usize..levels.end as usize], &[1, 0]);
    }

    #[test]
    fn corruption_is_caught() {
        let (head, data, table) = sample();
        let (_, h) = GraphFile::decode_head("g", &head).unwrap();
        let f = GraphFile::decode("g", h, &table).unwrap();
        let mut page = data[..PAGE as usize].to_vec();
        page[3] ^= 1;
        let e = f.check_page("g", 0, &page).unwrap_err().to_string();
        assert!(e.contains("graph page 0"), "{e}");
        let mut bad = table.clone();
        bad[0] ^= 1;
        assert!(GraphFile::decode("g", h, &bad).is_err(), "page table checksum");
        for i in 0..HEADER_LEN + size_of::<GraphHeader>() {
            let mut bad = head.clone();
            bad[i] ^= 0x21;
            assert!(GraphFile::decode_head("g", &bad).is_err(), "byte {i} of the header page");
        }
        assert!(GraphFile::decode_head("g", &head[..100]).is_err(), "short header page");
    }

    /// Headers whose own checksum holds but whose counts disagree are refused.
    #[test]
    fn inconsistent_counts_are_refused() {
        let table_crc = 0;
        for h in [
            GraphHeader::new(2, 3, 2, 0, 0, table_crc),
            GraphHeader::new(2, 10, 1, 0, 0, table_crc),
            GraphHeader::new(2, 10, 2, 5, 0, table_crc),
            GraphHeader::new(MAX_GRAPH_NODES + 1, 0, 2, 0, 0, table_crc),
        ] {
            let page = GraphFile::header_page([1; 16], &h, 0);
            assert!(GraphFile::decode_head("g", &page).is_err(), "{h:?}");
        }
    }
}
