//! k-way merge of the sorted runs into segments: for each list in order, its records from every
//! run (runs are in input order and sorted by (list, id) inside, so ids come out ascending)
//! become one extent, appended to the current segment; a segment is closed (header page
//! written, fsynced) when the next extent would take it past the size limit.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::run::{run_name, RunReader, RunWriter};
use super::spill::RunFile;
use super::{failpoint, Progress};
use crate::codec::Codec;
use crate::error::{Error, IoContext, Result};
use crate::format::{self, Directory, Extent, FileEntry, FileKind, PAGE};
use crate::io::durable;
use crate::store;

pub(super) struct Merged {
    pub directory: Directory,
    pub segment_files: Vec<FileEntry>,
}

struct SegmentWriter<'a> {
    dir: &'a Path,
    index_id: [u8; 16],
    max_bytes: u64,
    current: Option<(u32, File, u64, u32)>,
    next_no: u32,
    done: Vec<FileEntry>,
}

impl SegmentWriter<'_> {
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
}

fn open_runs(runs: &[RunFile], mp: &MergeParams) -> Result<Vec<RunReader>> {
    runs.iter().map(|r| RunReader::open(&r.path, mp.read_buffer, mp.nlist, mp.codec.code_size(), mp.index_id)).collect()
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
            let mut w = RunWriter::create(dir, first, end, mp.nlist, mp.codec.code_size())?;
            while let Some(list) = readers.iter().filter_map(RunReader::head).min() {
                let count: u64 = readers.iter().filter(|r| r.head() == Some(list)).map(|r| r.group_left() as u64).sum();
                let count = u32::try_from(count).map_err(|_| Error::Corrupt {
                    file: w_name(dir, first, end),
                    reason: format!("list {list} would hold more than 2^32 records in one run"),
                })?;
                w.group(list, count)?;
                drain_list(&mut readers, list, |id, code| w.record(id, code))?;
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
    let mut seg = SegmentWriter {
        dir,
        index_id,
        max_bytes: mp.segment_bytes.max(2 * PAGE),
        current: None,
        next_no: 0,
        done: Vec::new(),
    };
    let mut list_starts = Vec::with_capacity(nlist + 1);
    let mut extents = Vec::new();
    let (mut codes, mut ids, mut buf, mut arranged) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let cap = mp.max_extent_vectors.clamp(1, u32::MAX as usize);
    for list in 0..nlist as u32 {
        list_starts.push(extents.len() as u32);
        codes.clear();
        ids.clear();
        drain_list(&mut readers, list, |id, code| {
            ids.push(id);
            codes.extend_from_slice(code);
            if ids.len() == cap {
                extents.push(write_extent(&mut seg, codec, &codes, &ids, &mut buf, &mut arranged)?);
                codes.clear();
                ids.clear();
            }
            Ok(())
        })?;
        if !ids.is_empty() {
            extents.push(write_extent(&mut seg, codec, &codes, &ids, &mut buf, &mut arranged)?);
        }
        progress.advance(1);
    }
    list_starts.push(extents.len() as u32);
    finish_all(&mut readers)?;
    seg.close()?;
    progress.end();
    let directory = Directory {
        n_segments: seg.next_no,
        layout: store::code_layout(codec),
        ntotal: mp.ntotal,
        list_starts,
        extents,
    };
    Ok(Merged { directory, segment_files: seg.done })
}

/// Appends one extent of `ids` (ascending) and their codes (`rows`, as encoded) to the current
/// segment; `arranged` is scratch for the codes in the codec's list layout.
fn write_extent(
    seg: &mut SegmentWriter,
    codec: &Codec,
    rows: &[u8],
    ids: &[u64],
    buf: &mut Vec<u8>,
    arranged: &mut Vec<u8>,
) -> Result<Extent> {
    codec.arrange_list(rows, arranged);
    let crc = format::encode_extent(arranged, ids, store::code_layout(codec), buf);
    let (segment, offset) = seg.append(buf)?;
    Ok(Extent {
        segment: segment.into(),
        count: (ids.len() as u32).into(),
        offset: offset.into(),
        length: (buf.len() as u64).into(),
        crc: crc.into(),
        reserved: 0.into(),
    })
}
