//! Writing a paged file (format-spec/10-vectors.md, "Page table"): data pages checksummed one
//! by one as they fill, written in large pieces, then the page table and, last, the header
//! page, which the caller composes from what was written. A vectors file of an `,RFlat` index
//! and the graph and vectors files of an `HNSW{M},Flat` index are written this way.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::{self, PAGE};
use crate::io::durable;

/// Pages gathered before one write.
const WRITE_PAGES: usize = 256;

pub(super) struct PagedWriter {
    path: PathBuf,
    file: File,
    /// Whole pages not yet written, then the partial page being filled.
    pending: Vec<u8>,
    /// Data pages in the file and in `pending`'s whole pages.
    pages: u64,
    written: u64,
    crcs: Vec<u32>,
    payload_crc: u32,
}

/// What a finished paged file holds, for its header page.
pub(super) struct Sealed {
    pub pages: u64,
    /// crc32c of the page table's `4 · pages` bytes.
    pub table_crc: u32,
    /// crc32c of the whole payload: data pages and page table.
    pub payload_crc: u32,
}

impl PagedWriter {
    /// Creates `path` with a blank header page.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).at(path)?;
        file.write_all_at(&vec![0u8; PAGE as usize], 0).at(path)?;
        Ok(PagedWriter {
            path: path.to_owned(),
            file,
            pending: Vec::new(),
            pages: 0,
            written: 0,
            crcs: Vec::new(),
            payload_crc: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `bytes` after what was written, filling pages as it goes.
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let page = PAGE as usize;
        let mut rest = bytes;
        while !rest.is_empty() {
            let room = page - self.pending.len() % page;
            let (piece, tail) = rest.split_at(room.min(rest.len()));
            self.pending.extend_from_slice(piece);
            if self.pending.len().is_multiple_of(page) {
                self.seal_page();
            }
            rest = tail;
        }
        if self.pending.len() >= WRITE_PAGES * page {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends `bytes` from a fresh page; returns that page's number.
    pub fn append_from_page(&mut self, bytes: &[u8]) -> Result<u32> {
        self.end_page();
        let first = self.pages;
        self.append(bytes)?;
        u32::try_from(first).map_err(|_| Error::Corrupt {
            file: self.path.display().to_string(),
            reason: "more than 2^32 data pages in one file: lower --segment-bytes".into(),
        })
    }

    /// Pads a partly filled last page with zeros and seals it.
    pub fn end_page(&mut self) {
        let page = PAGE as usize;
        if !self.pending.len().is_multiple_of(page) {
            self.pending.resize(self.pending.len().next_multiple_of(page), 0);
            self.seal_page();
        }
    }

    /// Checksums the page that just filled the end of `pending`.
    fn seal_page(&mut self) {
        let page = &self.pending[self.pending.len() - PAGE as usize..];
        self.crcs.push(format::crc32c(page));
        self.payload_crc = crc32c::crc32c_append(self.payload_crc, page);
        self.pages += 1;
    }

    /// Writes the whole pages of `pending`.
    fn flush(&mut self) -> Result<()> {
        let whole = self.pending.len() - self.pending.len() % PAGE as usize;
        let at = format::page_offset(self.written);
        self.file.write_all_at(&self.pending[..whole], at).at(&self.path)?;
        self.written += (whole / PAGE as usize) as u64;
        self.pending.drain(..whole);
        Ok(())
    }

    /// Writes the last page and the page table, then the header page `head` makes from what
    /// was written; fsyncs. Returns the file's length and payload crc.
    pub fn finish(mut self, head: impl FnOnce(&Sealed) -> Vec<u8>) -> Result<(u64, u32)> {
        self.end_page();
        self.flush()?;
        let table = format::encode_table(&self.crcs);
        let (at, _) = format::table_span(self.pages);
        self.file.write_all_at(&table, at).at(&self.path)?;
        let sealed = Sealed {
            pages: self.pages,
            table_crc: format::crc32c(&table[..4 * self.crcs.len()]),
            payload_crc: crc32c::crc32c_append(self.payload_crc, &table),
        };
        self.file.write_all_at(&head(&sealed), 0).at(&self.path)?;
        durable::sync_file(&self.file).at(&self.path)?;
        Ok((format::file_len(self.pages), sealed.payload_crc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages fill across appends, a fresh-page append pads, and the table checks every page.
    #[test]
    fn pages_and_table_agree_with_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let mut w = PagedWriter::create(&path).unwrap();
        w.append(&[1; 5000]).unwrap();
        assert_eq!(w.append_from_page(&[2; 10]).unwrap(), 2);
        let (len, _) = w.finish(|s| vec![s.pages as u8; PAGE as usize]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!((bytes.len() as u64, bytes[0]), (len, 3));
        let (at, tl) = format::table_span(3);
        let table = &bytes[at as usize..(at + tl) as usize];
        let crc = format::crc32c(&table[..12]);
        let t = format::PageTable::decode("p", 3, crc, table).unwrap();
        for p in 0..3u64 {
            let o = format::page_offset(p) as usize;
            t.check_page("p", "data", p, &bytes[o..o + PAGE as usize]).unwrap();
        }
        assert_eq!(bytes[format::page_offset(1) as usize + 903], 1);
        assert_eq!(bytes[format::page_offset(1) as usize + 904], 0, "padded before the fresh page");
        assert_eq!(bytes[format::page_offset(2) as usize], 2);
    }
}
