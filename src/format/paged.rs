//! Paged files: a header page, data pages, then a table of one crc32c per data page (padded
//! to a page). Large files that readers take a page at a time — the vectors of `,RFlat`
//! indexes, the graph and vectors of `HNSW{M},Flat` — share this shape, so that a page can be
//! checked on its own (format-spec/10-vectors.md, "Page table").

use super::{align_up, crc32c, FormatError, PAGE};

/// Byte offset of data page `page` (0-based): data starts after the header page. Saturates,
/// so that an error about a page far past the end can still name where it would be.
pub const fn page_offset(page: u64) -> u64 {
    PAGE.saturating_mul(page.saturating_add(1))
}

/// Where the page table of a file of `n_pages` data pages starts, and its length (padded to a
/// page).
pub const fn table_span(n_pages: u64) -> (u64, u64) {
    (page_offset(n_pages), align_up(4 * n_pages, PAGE))
}

/// The whole file's length.
pub const fn file_len(n_pages: u64) -> u64 {
    let (at, len) = table_span(n_pages);
    at + len
}

/// The page table's bytes, padded to a page.
pub fn encode_table(crcs: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(table_span(crcs.len() as u64).1 as usize);
    crcs.iter().for_each(|c| out.extend_from_slice(&c.to_le_bytes()));
    out.resize(align_up(out.len() as u64, PAGE) as usize, 0);
    out
}

/// The crc32c of every data page of a file, as a reader holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageTable {
    pub crcs: Vec<u32>,
}

impl PageTable {
    /// Decodes the table read from [`table_span`] of a file of `n_pages` data pages, checked
    /// against `table_crc` (the crc32c of its first `4 · n_pages` bytes, kept in the file's
    /// own header).
    pub fn decode(file: &str, n_pages: u64, table_crc: u32, table: &[u8]) -> Result<PageTable, FormatError> {
        let (at, len) = table_span(n_pages);
        let n = n_pages as usize;
        if table.len() as u64 != len {
            return Err(FormatError::Truncated {
                file: file.into(),
                what: "page table".into(),
                offset: at,
                needed: len,
                available: table.len() as u64,
            });
        }
        let computed = crc32c(&table[..4 * n]);
        if computed != table_crc {
            return Err(FormatError::ChecksumMismatch {
                file: file.into(),
                what: "page table".into(),
                offset: at,
                len: 4 * n as u64,
                stored: table_crc,
                computed,
            });
        }
        if table[4 * n..].iter().any(|&b| b != 0) {
            return Err(FormatError::Invalid {
                file: file.into(),
                what: "page table padding".into(),
                offset: at + 4 * n as u64,
                reason: "not zero".into(),
            });
        }
        Ok(PageTable { crcs: super::u32s_from_le(&table[..4 * n]) })
    }

    /// Checks data page `page` (its 4096 bytes) against the table; `what` names the file's
    /// pages in errors ("vectors", "graph").
    pub fn check_page(&self, file: &str, what: &str, page: u64, bytes: &[u8]) -> Result<(), FormatError> {
        let Some(&stored) = self.crcs.get(page as usize) else {
            return Err(FormatError::Invalid {
                file: file.into(),
                what: format!("{what} page {page}"),
                offset: page_offset(page),
                reason: format!("past the file's {} data pages", self.crcs.len()),
            });
        };
        let computed = crc32c(bytes);
        if bytes.len() as u64 != PAGE || computed != stored {
            return Err(FormatError::ChecksumMismatch {
                file: file.into(),
                what: format!("{what} page {page}"),
                offset: page_offset(page),
                len: bytes.len() as u64,
                stored,
                computed,
            });
        }
        Ok(())
    }
}
