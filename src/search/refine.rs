//! Exact re-ranking (`,RFlat`, faiss's `IndexRefineFlat`): the codes' k × k_factor best
//! candidates of a query, each known by its extent and position, have their full vectors read
//! from the vectors files (format-spec/10-vectors.md) — only the pages that hold them, adjacent
//! pages coalesced, all in one submission — and the k nearest by exact distance are returned.
//! This is the one round of reads after the scan that lets an IVF index reach the recall of a
//! graph index that reads in many rounds. Where the index keeps its ids with the vectors
//! (format 1.5), the lists' scan knows its candidates by place alone, and each one's id comes
//! with its vector.

use std::fs::File;
use std::path::PathBuf;

use super::lists::ReadError;
use super::{RefineVectors, SearchStats};
use crate::distance::{self, Metric};
use crate::error::{Error, Result};
use crate::format::{Directory, Extent, IdsPlace, VectorsFile, PAGE};
use crate::io::{self, IoMode, ReadRequest};
use crate::topk::{Neighbor, TopK, NOWHERE};

/// One query's re-rank: the query (normalised where the metric wants it) and its candidates,
/// each with its place (`extent << 32 | position`).
pub(crate) type Ask<'a> = (&'a [f32], &'a [(Neighbor, u64)]);

/// The most pages one read of adjacent pages covers.
const COALESCE_MAX_PAGES: u64 = 256;

/// One segment's vectors file, opened for reads.
pub(crate) struct VectorsSegment {
    pub name: String,
    pub file: File,
    pub table: VectorsFile,
}

/// The full vectors of an index, beside its segments.
pub(crate) struct VectorStore {
    pub dir: PathBuf,
    pub kind: RefineVectors,
    pub dim: usize,
    /// Where the ids are: with the vectors, each record is the vector then its id.
    pub ids: IdsPlace,
    /// The kernel metric distances are computed under (queries come normalised for cosine).
    pub metric: Metric,
    /// By segment number.
    pub files: Vec<VectorsSegment>,
    pub io: IoMode,
}

impl VectorStore {
    fn vector_bytes(&self) -> u64 {
        self.kind.vector_bytes(self.dim) as u64
    }

    /// Bytes from one vector to the next in the vectors files.
    fn record_bytes(&self) -> u64 {
        match self.ids {
            IdsPlace::InExtent => self.vector_bytes(),
            IdsPlace::WithVectors => self.vector_bytes() + 8,
        }
    }

    /// Every extent's vectors (and block of ids) must lie inside its segment's vectors file
    /// (checked at open, so a query never reads past one).
    pub fn check_extents(&self, directory: &Directory) -> Result<()> {
        for (i, e) in directory.extents.iter().enumerate() {
            let f = &self.files[e.segment.get() as usize];
            let pages = f.table.header.extent_pages(e.count.get() as u64);
            let end = e.vectors_page.get() as u64 + pages;
            if end > f.table.header.n_pages.get() {
                return Err(Error::Corrupt {
                    file: crate::store::DIRECTORY.into(),
                    reason: format!(
                        "extent {i}: its vectors (pages {} ..< {end}) lie outside {} ({} pages)",
                        e.vectors_page.get(),
                        f.name,
                        f.table.header.n_pages.get()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Where candidate `at` (`extent << 32 | position`) lies: (segment, first byte in its
    /// vectors file's data pages).
    fn locate(&self, directory: &Directory, at: u64) -> (u32, u64) {
        let e = &directory.extents[(at >> 32) as usize];
        let position = at & 0xFFFF_FFFF;
        (e.segment.get(), e.vectors_page.get() as u64 * PAGE + position * self.record_bytes())
    }

    /// The `k` nearest of `candidates` to `q` (normalised where the metric wants it) by exact
    /// distance from their full vectors; adds what the reads cost to `stats`.
    pub fn rerank(
        &self,
        directory: &Directory,
        q: &[f32],
        candidates: &[(Neighbor, u64)],
        k: usize,
        reader: &mut io::Reader,
        stats: &mut SearchStats,
    ) -> Result<Vec<Neighbor>> {
        let mut out = self.rerank_many(directory, &[(q, candidates)], k, reader, stats)?;
        Ok(out.pop().unwrap_or_default())
    }

    /// [`rerank`](Self::rerank) for several queries, the pages of all their candidates read
    /// in one submission (a page two of them need read once).
    pub fn rerank_many(
        &self,
        directory: &Directory,
        queries: &[Ask],
        k: usize,
        reader: &mut io::Reader,
        stats: &mut SearchStats,
    ) -> Result<Vec<Vec<Neighbor>>> {
        let mut reads = self.rerank_reads(directory, queries)?;
        self.read(&mut reads, reader, stats)?;
        stats.refine_pages += reads.pages.len() as u64;
        Ok(self.ranked(directory, queries, k, &reads))
    }

    /// The reads of every page a candidate of `queries` lies on (a record may straddle two).
    pub fn rerank_reads(&self, directory: &Directory, queries: &[Ask]) -> Result<PageReads<'_>> {
        let rb = self.record_bytes();
        let mut pages: Vec<(u32, u64)> = Vec::new();
        for &(_, at) in queries.iter().flat_map(|(_, c)| c.iter()) {
            if at == NOWHERE {
                return Err(Error::Corrupt {
                    file: self.dir.display().to_string(),
                    reason: "a re-rank candidate has no place in a list".into(),
                });
            }
            let (seg, start) = self.locate(directory, at);
            pages.extend((start / PAGE..=(start + rb - 1) / PAGE).map(|p| (seg, p)));
        }
        self.page_reads(pages)
    }

    /// The `k` nearest of each query's candidates by exact distance, from the pages of
    /// [`rerank_reads`](Self::rerank_reads) once all have arrived.
    pub fn ranked(&self, directory: &Directory, queries: &[Ask], k: usize, reads: &PageReads) -> Vec<Vec<Neighbor>> {
        let (vb, rb) = (self.vector_bytes(), self.record_bytes());
        let (pages, held) = (&reads.pages, &reads.held);
        let (mut raw, mut v) = (vec![0u8; rb as usize], vec![0f32; self.dim]);
        let mut out = Vec::with_capacity(queries.len());
        for &(q, candidates) in queries {
            let mut top = TopK::new(k);
            for &(n, at) in candidates {
                let (seg, start) = self.locate(directory, at);
                let mut got = 0;
                while got < raw.len() {
                    let byte = start + got as u64;
                    let slot =
                        pages.binary_search(&(seg, byte / PAGE)).unwrap_or_else(|_| unreachable!("collected above"));
                    let from = slot * PAGE as usize + (byte % PAGE) as usize;
                    let take = (raw.len() - got).min(PAGE as usize - (byte % PAGE) as usize);
                    raw[got..got + take].copy_from_slice(&held[from..from + take]);
                    got += take;
                }
                let (vector, id) = raw.split_at(vb as usize);
                match self.kind {
                    RefineVectors::Float32 => v
                        .iter_mut()
                        .zip(vector.chunks_exact(4))
                        .for_each(|(x, b)| *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    RefineVectors::Uint8 => v.iter_mut().zip(vector).for_each(|(x, &b)| *x = b as f32),
                }
                // With the ids kept here, the scan knew the candidate by its place alone.
                let id = match self.ids {
                    IdsPlace::InExtent => n.id,
                    IdsPlace::WithVectors => {
                        u64::from_le_bytes(id.try_into().unwrap_or_else(|_| unreachable!("8 bytes")))
                    }
                };
                top.push(id, distance::dissimilarity(self.metric, q, &v));
            }
            out.push(top.into_sorted_vec());
        }
        out
    }

    fn id_block(&self, directory: &Directory, x: u32) -> (u32, u64, u64) {
        let e: &Extent = &directory.extents[x as usize];
        let h = &self.files[e.segment.get() as usize].table.header;
        let (first, len) = h.ids_block(e.vectors_page.get() as u64, e.count.get() as u64);
        (e.segment.get(), first, len)
    }

    /// The reads of the pages of the blocks of ids of extents `xs` (each `8 · count` bytes):
    /// what a scan that filters needs where the index keeps its ids with the vectors.
    pub fn id_reads(&self, directory: &Directory, xs: &[u32]) -> Result<PageReads<'_>> {
        let mut pages: Vec<(u32, u64)> = Vec::new();
        for &x in xs {
            let (seg, first, len) = self.id_block(directory, x);
            pages.extend((first..first + len.div_ceil(PAGE)).map(|p| (seg, p)));
        }
        self.page_reads(pages)
    }

    /// The blocks of ids of extents `xs`, from the pages of [`id_reads`](Self::id_reads) once
    /// all have arrived.
    pub fn ids_from(&self, directory: &Directory, xs: &[u32], reads: &PageReads) -> Vec<Vec<u8>> {
        xs.iter()
            .map(|&x| {
                let (seg, first, len) = self.id_block(directory, x);
                let slot = reads.pages.binary_search(&(seg, first)).unwrap_or_else(|_| unreachable!("collected above"));
                reads.held[slot * PAGE as usize..][..len as usize].to_vec()
            })
            .collect()
    }

    /// The reads of `pages` (any order, repeats allowed): runs of consecutive pages of one file
    /// as one request.
    fn page_reads(&self, mut pages: Vec<(u32, u64)>) -> Result<PageReads<'_>> {
        pages.sort_unstable();
        pages.dedup();
        let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
        for i in 0..pages.len() {
            match runs.last_mut() {
                Some(r)
                    if pages[i].0 == pages[r.start].0
                        && pages[i].1 == pages[i - 1].1 + 1
                        && (i - r.start) < COALESCE_MAX_PAGES as usize =>
                {
                    r.end = i + 1
                }
                _ => runs.push(i..i + 1),
            }
        }
        let reqs: Vec<ReadRequest> = runs
            .iter()
            .map(|r| {
                let (seg, first) = pages[r.start];
                let f = &self.files[seg as usize];
                ReadRequest::new(&f.file, VectorsFile::page_offset(first), r.len() * PAGE as usize)
                    .map_err(|e| Error::Io { path: self.dir.join(&f.name), source: e })
            })
            .collect::<Result<_>>()?;
        let held = vec![0u8; pages.len() * PAGE as usize];
        Ok(PageReads { pages, runs, reqs, held })
    }

    /// Read `i` of `reads` has arrived as `bytes`: each page is checked against its file's table
    /// and kept.
    pub fn take_read(&self, reads: &mut PageReads, i: usize, bytes: &[u8]) -> std::result::Result<(), ReadError> {
        let r = reads.runs[i].clone();
        let f = &self.files[reads.pages[r.start].0 as usize];
        for (j, page) in bytes.chunks(PAGE as usize).enumerate() {
            f.table.check_page(&f.name, reads.pages[r.start + j].1, page)?;
        }
        reads.held[r.start * PAGE as usize..r.end * PAGE as usize].copy_from_slice(bytes);
        Ok(())
    }

    /// Reads all of `reads` in one submission (the bytes and requests go into `stats`; the
    /// caller says what the pages were).
    pub fn read(&self, reads: &mut PageReads, reader: &mut io::Reader, stats: &mut SearchStats) -> Result<()> {
        let reqs = std::mem::take(&mut reads.reqs);
        let engine = reader
            .read_all::<ReadError>(self.io, &reqs, |i, bytes| self.take_read(reads, i, bytes))
            .map_err(|e| e.into_error(&self.dir))?;
        reads.reqs = reqs;
        reads.charge(stats, engine);
        Ok(())
    }
}

/// Pages of the vectors files a search needs: their reads and, as they arrive, their bytes.
pub(crate) struct PageReads<'s> {
    /// (segment, page), sorted and distinct.
    pages: Vec<(u32, u64)>,
    /// Read `i` covers `pages[runs[i]]`.
    runs: Vec<std::ops::Range<usize>>,
    pub reqs: Vec<ReadRequest<'s>>,
    /// The pages back to back, in the order of `pages`.
    held: Vec<u8>,
}

impl PageReads<'_> {
    /// Adds what these reads cost to `stats`, read by `engine`.
    pub fn charge(&self, stats: &mut SearchStats, engine: io::IoEngine) {
        stats.bytes_read += self.held.len() as u64;
        stats.reads += self.reqs.len() as u64;
        if !self.reqs.is_empty() {
            stats.io = stats.io.or(Some(engine));
        }
    }

    pub fn pages(&self) -> usize {
        self.pages.len()
    }
}
