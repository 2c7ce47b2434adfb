//! k-way merge of the sorted runs into segments: for each list in order, its records from every
//! run (runs are in input order and sorted by (list, id) inside, so ids come out ascending)
//! become one extent, appended to the current segment; a segment is closed (header page
//! written, fsynced) when the next extent would take it past the size limit.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::paged::PagedWriter;
use super::run::{run_name, RunReader, RunWriter};
use super::spill::RunFile;
use super::{failpoint, Progress};
use crate::codec::Codec;
use crate::error::{Error, IoContext, Result};
use crate::format::{self, Directory, Extent, FileEntry, FileKind, IdsPlace, VectorsFile, VectorsHeader, PAGE};
use crate::io::durable;
use crate::store;

pub(super) struct Merged {
    pub directory: Directory,
    /// Segments, and the vectors files beside them where the index keeps full vectors.
    pub segment_files: Vec<FileEntry>,
}

/// How a `,RFlat` index keeps its full vectors (the vectors file header's fields).
#[derive(Clone, Copy, Debug)]
pub(super) struct RefineShape {
    pub dim: u32,
    pub elem: u8,
    pub vector_bytes: usize,
    /// Where the extents' ids go: [`IdsPlace::WithVectors`] for every new index (format 1.5);
    /// an index's own place when it changes.
    pub ids: IdsPlace,
}

pub(super) struct SegmentWriter<'a> {
    dir: &'a Path,
    index_id: [u8; 16],
    max_bytes: u64,
    current: Option<(u32, File, u64, u32)>,
    /// The current segment's vectors file, where the index keeps full vectors.
    vectors: Option<VectorsWriter>,
    refine: Option<RefineShape>,
    next_no: u32,
    done: Vec<FileEntry>,
}

/// Writes one vectors file (format-spec/10-vectors.md): each extent's vectors from a fresh
/// page (each followed by its id, and the extent's ids after them, where the ids are kept
/// here).
struct VectorsWriter {
    out: PagedWriter,
    shape: RefineShape,
    n_vectors: u64,
    /// Scratch for an extent's records.
    records: Vec<u8>,
}

impl VectorsWriter {
    fn create(dir: &Path, no: u32, shape: RefineShape) -> Result<Self> {
        let out = PagedWriter::create(&dir.join(store::vectors_name(no)))?;
        Ok(VectorsWriter { out, shape, n_vectors: 0, records: Vec::new() })
    }

    /// Appends one extent's vectors (their `ids` in the same order) from a fresh page; returns
    /// that page's number.
    fn append(&mut self, vectors: &[u8], ids: &[u64]) -> Result<u32> {
        self.n_vectors += ids.len() as u64;
        if self.shape.ids == IdsPlace::InExtent {
            return self.out.append_from_page(vectors);
        }
        self.records.clear();
        for (v, id) in vectors.chunks_exact(self.shape.vector_bytes.max(1)).zip(ids) {
            self.records.extend_from_slice(v);
            self.records.extend_from_slice(&id.to_le_bytes());
        }
        let first = self.out.append_from_page(&self.records)?;
        self.records.clear();
        ids.iter().for_each(|id| self.records.extend_from_slice(&id.to_le_bytes()));
        self.out.append_from_page(&self.records)?;
        Ok(first)
    }

    /// Writes the last page, the page table and the header page; fsyncs.
    fn finish(self, index_id: [u8; 16]) -> Result<FileEntry> {
        let name = self.out.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (s, n_vectors) = (self.shape, self.n_vectors);
        let (len, crc) = self.out.finish(|w| {
            let with_ids = s.ids == IdsPlace::WithVectors;
            let h = VectorsHeader::new(s.dim, s.elem, s.vector_bytes as u32, with_ids, w.pages, n_vectors, w.table_crc);
            VectorsFile::header_page(index_id, &h, w.payload_crc)
        })?;
        Ok(FileEntry::new(&name, FileKind::Vectors, len, crc))
    }
}

impl<'a> SegmentWriter<'a> {
    /// A writer of segments numbered from `first_no` in `dir`, closed at `max_bytes`.
    pub fn new(
        dir: &'a Path,
        index_id: [u8; 16],
        max_bytes: u64,
        refine: Option<RefineShape>,
        first_no: u32,
    ) -> SegmentWriter<'a> {
        SegmentWriter {
            dir,
            index_id,
            max_bytes: max_bytes.max(2 * PAGE),
            current: None,
            vectors: None,
            refine,
            next_no: first_no,
            done: Vec::new(),
        }
    }

    /// Closes the last segment; returns the files written and one past the last number used.
    pub fn finish(mut self) -> Result<(Vec<FileEntry>, u32)> {
        self.close()?;
        Ok((self.done, self.next_no))
    }

    /// Appends one padded extent; returns (segment, offset).
    fn append(&mut self, bytes: &[u8]) -> Result<(u32, u64)> {
        if let Some((_, _, size, _)) = &self.current {
            if *size > PAGE && size + bytes.len() as u64 > self.max_bytes {
                self.close()?;
            }
        }
        if self.current.is_none() {
            let no = self.next_no;
            self.next_no += 1;
            let path = self.dir.join(store::segment_name(no));
            let f = File::create(&path).at(&path)?;
            // Placeholder header page; the real one is written when the segment closes.
            f.write_all_at(&vec![0u8; PAGE as usize], 0).at(&path)?;
            self.current = Some((no, f, PAGE, 0));
            if let Some(shape) = self.refine {
                self.vectors = Some(VectorsWriter::create(self.dir, no, shape)?);
            }
        }
        let Some((no, f, size, crc)) = self.current.as_mut() else { unreachable!("opened above") };
        let path = self.dir.join(store::segment_name(*no));
        f.write_all_at(bytes, *size).at(&path)?;
        let off = *size;
        *size += bytes.len() as u64;
        *crc = crc32c::crc32c_append(*crc, bytes);
        Ok((*no, off))
    }

    fn close(&mut self) -> Result<()> {
        if let Some((no, mut f, size, crc)) = self.current.take() {
            let path = self.dir.join(store::segment_name(no));
            f.write_all_at(&format::segment_header_page(self.index_id, size - PAGE, crc), 0).at(&path)?;
            f.flush().at(&path)?;
            durable::sync_file(&f).at(&path)?;
            self.done.push(FileEntry::new(&store::segment_name(no), FileKind::Segment, size, crc));
            if let Some(v) = self.vectors.take() {
                self.done.push(v.finish(self.index_id)?);
            }
            failpoint::hit("segment");
        }
        Ok(())
    }
}

/// Sizes of the merge, from the memory budget.
pub(super) struct MergeParams<'a> {
    pub index_id: [u8; 16],
    pub nlist: usize,
    /// Arranges each extent's codes (blocks of 32 for fast-scan).
    pub codec: &'a Codec,
    pub segment_bytes: u64,
    pub ntotal: u64,
    /// Read buffer per run file.
    pub read_buffer: usize,
    /// Most vectors per extent: a longer list is written as several consecutive extents, so
    /// the merge never holds more than this many codes and ids however skewed the lists are.
    pub max_extent_vectors: usize,
    /// Most runs open at once: with more, consecutive groups are first merged into longer runs
    /// (as often as needed), which keeps file handles and read buffers bounded.
    pub fan_in: usize,
    /// Full vectors follow each code in the runs and go to vectors files (`,RFlat`).
    pub refine: Option<RefineShape>,
    /// The number of the first segment written (0 for a build; past every number in use for
    /// an addition).
    pub first_segment: u32,
    /// The id each run record's row gets.
    pub ids: IdMap<'a>,
}

/// How the rows of the input become ids.
#[derive(Clone, Copy, Debug)]
pub(super) enum IdMap<'a> {
    /// Row r is id `base + r` (a build: base 0).
    From(u64),
    /// Row r is id `ids[r]`.
    Given(&'a [u64]),
}

impl IdMap<'_> {
    fn of(&self, row: u64) -> u64 {
        match self {
            IdMap::From(base) => base + row,
            IdMap::Given(ids) => ids[row as usize],
        }
    }
}

impl<'a> MergeParams<'a> {
    /// A merge of `ntotal` records sized by the memory plan `mem`, into segments numbered from
    /// 0, each row its own id (a build's).
    pub fn new(
        index_id: [u8; 16],
        codec: &'a Codec,
        (nlist, ntotal, segment_bytes): (usize, u64, u64),
        mem: &super::BudgetPlan,
        refine: Option<RefineShape>,
    ) -> Self {
        MergeParams {
            index_id,
            nlist,
            codec,
            segment_bytes,
            ntotal,
            read_buffer: mem.merge_buffer,
            max_extent_vectors: mem.max_extent_vectors,
            fan_in: mem.merge_fan_in,
            refine,
            first_segment: 0,
            ids: IdMap::From(0),
        }
    }

    /// Bytes of a run record after its id: the code, and the full vector if kept.
    fn record_size(&self) -> usize {
        self.codec.code_size() + self.refine.map_or(0, |r| r.vector_bytes)
    }
}

fn open_runs(runs: &[RunFile], mp: &MergeParams) -> Result<Vec<RunReader>> {
    runs.iter().map(|r| RunReader::open(&r.path, mp.read_buffer, mp.nlist, mp.record_size(), mp.index_id)).collect()
}

/// Hands `each` every record of `list`, run by run: runs hold consecutive parts of the input,
/// so this keeps ids ascending.
fn drain_list(readers: &mut [RunReader], list: u32, mut each: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
    for r in readers.iter_mut() {
        while r.head() == Some(list) {
            let id = r.next_record()?;
            each(id, &r.code)?;
        }
    }
    Ok(())
}

/// Every run read to its end, its checksum verified.
fn finish_all(readers: &mut [RunReader]) -> Result<()> {
    readers.iter_mut().try_for_each(RunReader::finish)
}

/// Merges consecutive groups of `fan_in` runs into one run each, until at most `fan_in` are
/// left. The records and their order do not change, so the index is the same byte for byte
/// whatever the fan-in. Each merged run is a checkpoint like the runs it replaces (named by the
/// rows it covers); its inputs are removed once it is durable.
fn reduce_runs(mut runs: Vec<RunFile>, mp: &MergeParams, progress: &dyn Progress) -> Result<Vec<RunFile>> {
    let fan_in = mp.fan_in.max(2);
    let mut pass = 0;
    while runs.len() > fan_in {
        pass += 1;
        progress.begin(&format!("merge pass {pass}: {} runs in groups of {fan_in}", runs.len()), runs.len() as u64);
        let mut next = Vec::with_capacity(runs.len().div_ceil(fan_in));
        for group in runs.chunks(fan_in) {
            if group.len() == 1 {
                next.push(group[0].clone());
                continue;
            }
            let (first, end) = (group[0].first, group[group.len() - 1].end);
            let dir = group[0].path.parent().unwrap_or(Path::new("."));
            let mut readers = open_runs(group, mp)?;
            let mut w = RunWriter::create(dir, first, end, mp.nlist, mp.record_size())?;
            while let Some(list) = readers.iter().filter_map(RunReader::head).min() {
                let count: u64 = readers.iter().filter(|r| r.head() == Some(list)).map(|r| r.group_left() as u64).sum();
                let count = u32::try_from(count).map_err(|_| Error::Corrupt {
                    file: w_name(dir, first, end),
                    reason: format!("list {list} would hold more than 2^32 records in one run"),
                })?;
                w.group(list, count)?;
                drain_list(&mut readers, list, |id, record| w.record(id, record, &[]))?;
            }
            finish_all(&mut readers)?;
            drop(readers);
            let (path, bytes) = w.finish(mp.index_id)?;
            failpoint::hit("pass");
            for r in group {
                std::fs::remove_file(&r.path).at(&r.path)?;
            }
            next.push(RunFile { first, end, path, bytes });
            progress.advance(group.len() as u64);
        }
        progress.end();
        runs = next;
    }
    Ok(runs)
}

fn w_name(dir: &Path, first: u64, end: u64) -> String {
    dir.join(run_name(first, end)).display().to_string()
}

pub(super) fn merge_runs(runs: Vec<RunFile>, mp: &MergeParams, dir: &Path, progress: &dyn Progress) -> Result<Merged> {
    let runs = reduce_runs(runs, mp, progress)?;
    let (nlist, codec, index_id) = (mp.nlist, mp.codec, mp.index_id);
    progress.begin("merge into segments", nlist as u64);
    let mut readers = open_runs(&runs, mp)?;
    let mut seg = SegmentWriter::new(dir, index_id, mp.segment_bytes, mp.refine, mp.first_segment);
    let mut list_starts = Vec::with_capacity(nlist + 1);
    let mut extents = Vec::new();
    let mut scratch = ExtentScratch::default();
    let cap = mp.max_extent_vectors.clamp(1, u32::MAX as usize);
    let cs = codec.code_size();
    for list in 0..nlist as u32 {
        list_starts.push(extents.len() as u32);
        scratch.clear();
        drain_list(&mut readers, list, |row, record| {
            scratch.ids.push(mp.ids.of(row));
            scratch.codes.extend_from_slice(&record[..cs]);
            scratch.vectors.extend_from_slice(&record[cs..]);
            if scratch.ids.len() == cap {
                extents.push(write_extent(&mut seg, codec, &mut scratch)?);
                scratch.clear();
            }
            Ok(())
        })?;
        if !scratch.ids.is_empty() {
            extents.push(write_extent(&mut seg, codec, &mut scratch)?);
        }
        progress.advance(1);
    }
    list_starts.push(extents.len() as u32);
    finish_all(&mut readers)?;
    let (segment_files, n_segments) = seg.finish()?;
    progress.end();
    let layout = store::code_layout(codec);
    let ids = mp.refine.map_or(IdsPlace::InExtent, |s| s.ids);
    let directory = Directory { n_segments, layout, ntotal: mp.ntotal, ids, list_starts, extents };
    Ok(Merged { directory, segment_files })
}

/// One extent being gathered: ids, their codes as encoded and their full vectors (empty
/// without `,RFlat`), and scratch for the extent's bytes.
#[derive(Default)]
pub(super) struct ExtentScratch {
    pub ids: Vec<u64>,
    pub codes: Vec<u8>,
    pub vectors: Vec<u8>,
    arranged: Vec<u8>,
    buf: Vec<u8>,
}

impl ExtentScratch {
    pub fn clear(&mut self) {
        self.ids.clear();
        self.codes.clear();
        self.vectors.clear();
    }

    /// Puts the records in ascending id order (a build's already are; an addition's given
    /// ids and a compaction's extents need not be).
    fn sort_by_id(&mut self) {
        if self.ids.is_sorted() {
            return;
        }
        let n = self.ids.len();
        let (cs, vb) = (self.codes.len() / n, self.vectors.len() / n);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_unstable_by_key(|&i| self.ids[i]);
        self.ids = order.iter().map(|&i| self.ids[i]).collect();
        self.codes = order.iter().flat_map(|&i| &self.codes[i * cs..(i + 1) * cs]).copied().collect();
        self.vectors = order.iter().flat_map(|&i| &self.vectors[i * vb..(i + 1) * vb]).copied().collect();
    }
}

/// Appends one extent to the current segment, and its vectors to the segment's vectors file.
/// Within the extent ids ascend.
pub(super) fn write_extent(seg: &mut SegmentWriter, codec: &Codec, x: &mut ExtentScratch) -> Result<Extent> {
    x.sort_by_id();
    codec.arrange_list(&x.codes, &mut x.arranged);
    let layout = store::code_layout(codec);
    let crc = match seg.refine.map_or(IdsPlace::InExtent, |s| s.ids) {
        IdsPlace::InExtent => format::encode_extent(&x.arranged, &x.ids, layout, &mut x.buf),
        IdsPlace::WithVectors => format::encode_codes_extent(&x.arranged, x.ids.len() as u64, layout, &mut x.buf),
    };
    let (segment, offset) = seg.append(&x.buf)?;
    let vectors_page = match seg.vectors.as_mut() {
        Some(v) => v.append(&x.vectors, &x.ids)?,
        None => 0,
    };
    Ok(Extent {
        segment: segment.into(),
        count: (x.ids.len() as u32).into(),
        offset: offset.into(),
        length: (x.buf.len() as u64).into(),
        crc: crc.into(),
        vectors_page: vectors_page.into(),
    })
}
