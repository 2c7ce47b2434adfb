//! The changes to a built IVF index, each committed as one new generation: `add` (new vectors,
//! encoded with the trained quantizer and codebooks, as new extents in new segments), `delete`
//! (a new deletion set) and `compact` (lists rewritten without their deleted entries, one
//! extent each). A change that fails or is killed before its commit leaves the index as it was;
//! what it wrote is removed at once, or by the next writer.

use std::path::{Path, PathBuf};

use super::budget::{self, BuildShape};
use super::head::{check_ids, with_deleted, ChangeReport, Head, VectorsAccess};
use super::merge::{self, ExtentScratch, IdMap, MergeParams, RefineShape, SegmentWriter};
use super::{check_shape, spill, BuildOptions, Progress, RefineElem};
use crate::error::{Error, IoContext, Result};
use crate::format::{Deletions, Directory, Extent, FileEntry};
use crate::input::{Elem, VectorSource};
use crate::store;
use crate::RefineVectors;

/// Options of `add` and `compact`.
#[derive(Clone, Debug)]
pub struct ChangeOptions {
    /// Bound on the change's peak resident memory (None: half of physical memory), as for a
    /// build.
    pub memory_budget: Option<u64>,
    /// Most vectors per streamed chunk of an addition.
    pub chunk_size: usize,
    /// New segment files are closed once they reach this size.
    pub segment_bytes: u64,
}

impl Default for ChangeOptions {
    fn default() -> Self {
        let b = BuildOptions::default();
        ChangeOptions { memory_budget: None, chunk_size: b.chunk_size, segment_bytes: b.segment_bytes }
    }
}

/// Ids run up to i64::MAX: they leave the library as int64 (faiss's idx_t).
const MAX_ID: u64 = i64::MAX as u64;

/// Adds the vectors of `source` to the IVF index in `dir` as a new generation: assigned and
/// encoded with the index's trained quantizer and codebooks, sorted by list and written as new
/// extents in new segments (and full vectors, for `,RFlat`), in memory bounded as a build's.
/// Without `ids` they are numbered from one past the largest id the index ever assigned (a
/// deleted id is never handed out again); with `ids` (one per vector, each non-negative), an
/// id live in the index or given twice is an error, and a deleted id may come back.
///
/// ```no_run
/// use quiver::{add_vectors, ChangeOptions, NoProgress, SliceSource};
/// let rows = vec![0.5f32; 128 * 10]; // ten vectors of dimension 128
/// let report = add_vectors("my-index".as_ref(), &SliceSource { data: &rows, dim: 128 }, None,
///     &ChangeOptions::default(), &NoProgress)?;
/// println!("generation {:?}: {} vectors now", report.generation, report.ntotal);
/// # Ok::<(), quiver::Error>(())
/// ```
pub fn add_vectors(
    dir: &Path,
    source: &dyn VectorSource,
    ids: Option<&[i64]>,
    opts: &ChangeOptions,
    progress: &dyn Progress,
) -> Result<ChangeReport> {
    let (n, d) = (source.len(), source.dim());
    check_shape(n, d)?;
    let given = ids.map(check_ids).transpose()?;
    if let Some(g) = &given {
        if g.len() != n {
            return Err(Error::InvalidParameter(format!(
                "{} ids for {n} vectors: give exactly one id per vector",
                g.len()
            )));
        }
    }
    let head = Head::open(dir, "additions")?;
    let info = head.info.clone();
    if d != info.dim {
        return Err(Error::InvalidParameter(format!(
            "the vectors to add have dimension {d}, the index holds {}-dimensional vectors",
            info.dim
        )));
    }
    let refine = match info.refine {
        None => None,
        Some(RefineVectors::Uint8) if source.elem() != Elem::U8 => {
            return Err(Error::InvalidParameter(format!(
                "this index keeps its full vectors as uint8 (it was built from uint8 input), and the input is {}: add uint8 vectors (.u8bin, .bvecs, uint8 .npy)",
                source.elem().name()
            )))
        }
        Some(kind) => Some(RefineElem { code: kind.code(), vector_bytes: kind.vector_bytes(d) }),
    };
    let (map, next_id) = match &given {
        None => {
            let base = info.next_id;
            let next = base.checked_add(n as u64).filter(|&e| e <= MAX_ID + 1).ok_or_else(|| {
                Error::InvalidParameter(format!("ids from {base} for {n} vectors would pass 2^63 − 1"))
            })?;
            (IdMap::From(base), next)
        }
        Some(ids) => {
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                return Err(Error::InvalidParameter(format!("id {} is given twice: ids must be distinct", w[0])));
            }
            let live = head.find_live(&sorted)?;
            if let Some(&(id, list)) = live.first() {
                return Err(Error::InvalidParameter(format!(
                    "{} of the ids are already in the index (the first, {id}, in list {list}); delete them first or give other ids",
                    live.len()
                )));
            }
            let largest = sorted.last().copied().unwrap_or(0);
            (IdMap::Given(ids), info.next_id.max(largest + 1))
        }
    };
    let coarse = head.coarse()?;
    let codec = head.codec()?;
    let record = codec.code_size() + refine.map_or(0, |r| r.vector_bytes);
    let mem = stream_budget(opts, n, d, &info, record)?;
    let index_id = head.manifest.index_id;
    let first_segment = head.next_segment()?;
    let scratch = Scratch::create(dir)?;
    let written = (|| {
        let bopts = BuildOptions { metric: info.metric, ef_search: info.ef_search, ..Default::default() };
        let target =
            spill::SpillTarget { dir: &scratch.0, index_id, nlist: info.nlist, by_residual: info.by_residual, refine };
        let runs =
            spill::spill_runs(source, &coarse, &codec, &bopts, mem.chunk_rows, &[(0, n as u64)], &target, progress)?;
        merge::merge_runs(
            runs,
            &MergeParams {
                first_segment,
                ids: map,
                ..MergeParams::new(
                    index_id,
                    &codec,
                    (info.nlist, n as u64, opts.segment_bytes),
                    &mem,
                    refine.map(|r| r.shape(d)),
                )
            },
            dir,
            progress,
        )
    })();
    drop(scratch);
    let merged = match written {
        Ok(m) => m,
        Err(e) => return Err(clean_up(&head, e)),
    };
    let directory = append_extents(&head.directory, &merged.directory);
    let deletions = head.deletions.clone();
    let ntotal = info.ntotal + n as u64;
    finish(
        head,
        merged.segment_files,
        directory,
        deletions,
        next_id,
        ChangeReport { vectors: n as u64, ntotal, ..Default::default() },
    )
}

/// Deletes `ids` from the IVF index in `dir` as a new generation: they go into its deletion
/// set and searches no longer return them. Ids not live in the index are counted in
/// `not_found` (deleting is idempotent); when none is live, nothing is committed.
pub fn delete_ids(dir: &Path, ids: &[i64]) -> Result<ChangeReport> {
    let mut wanted = check_ids(ids)?;
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() {
        return Err(Error::InvalidParameter("no ids to delete were given".into()));
    }
    let head = Head::open(dir, "deletions")?;
    let found = head.find_live(&wanted)?;
    let not_found = (wanted.len() - found.len()) as u64;
    if found.is_empty() {
        return Ok(ChangeReport { not_found, ntotal: head.info.ntotal, ..Default::default() });
    }
    let g = store::next_generation(dir)?;
    let deletions = with_deleted(&head.deletions, &found, g);
    let directory = head.directory.clone();
    let (next_id, deleted) = (head.info.next_id, found.len() as u64);
    let report = ChangeReport { vectors: deleted, not_found, ntotal: head.info.ntotal - deleted, ..Default::default() };
    finish(head, Vec::new(), directory, deletions, next_id, report)
}

/// Compacts the IVF index in `dir` as a new generation: every list with more than one extent
/// or any deleted entry is rewritten into one fresh extent (ids ascending) without its
/// deleted entries, and so is every list of a segment that would otherwise stay less than
/// half in use (so that its file goes); the others are kept where they are, and the deletion
/// set empties. Files
/// that only older generations name are removed at once when no reader holds them (else by
/// the next writer). Results are the same before and after. With nothing to compact, only
/// that removal happens.
pub fn compact(dir: &Path, opts: &ChangeOptions) -> Result<ChangeReport> {
    let head = Head::open(dir, "a compaction")?;
    let info = head.info.clone();
    let nlist = info.nlist;
    let mut deleted = vec![0u64; nlist];
    for e in &head.deletions.entries {
        if let Some(c) = deleted.get_mut(e.list.get() as usize) {
            *c += 1;
        }
    }
    let vector_bytes = info.refine.map(|k| k.vector_bytes(info.dim) as u64);
    let rewrite = store::plan_compaction(&head.directory, &deleted, vector_bytes).rewrite;
    let lists_rewritten = rewrite.iter().filter(|&&r| r).count() as u64;
    if lists_rewritten == 0 {
        return Ok(ChangeReport { ntotal: info.ntotal, ..Default::default() });
    }
    let codec = head.codec()?;
    let mut vectors = info.refine.map(|kind| VectorsAccess::new(&head, kind));
    let shape = info.refine.map(|kind| RefineShape {
        dim: info.dim as u32,
        elem: kind.code(),
        vector_bytes: kind.vector_bytes(info.dim),
        ids: head.directory.ids,
    });
    let record = codec.code_size() + shape.map_or(0, |s| s.vector_bytes) + 8;
    // Half the budget for the extent being gathered and its arranged copy.
    let budget = opts.memory_budget.unwrap_or_else(budget::default_budget);
    let cap = ((budget / 2) / (2 * record as u64)).clamp(1, u32::MAX as u64) as usize;
    let hidden = head.tombstones();
    let first_segment = head.next_segment()?;
    let mut dropped = 0u64;
    let rewritten = (|| -> Result<(Vec<FileEntry>, Vec<Vec<Extent>>)> {
        let mut seg = SegmentWriter::new(dir, head.manifest.index_id, opts.segment_bytes, shape, first_segment);
        let mut lists: Vec<Vec<Extent>> = vec![Vec::new(); nlist];
        let mut x = ExtentScratch::default();
        let mut rows = Vec::new();
        let mut current = usize::MAX;
        head.for_each_extent(|list, no, e, view| {
            if !rewrite[list] {
                lists[list].push(*e);
                return Ok(());
            }
            if list != current {
                flush(&mut seg, &codec, &mut x, &mut lists, current)?;
                current = list;
            }
            codec.unarrange_list(view.codes, view.count, &mut rows);
            let full = match vectors.as_mut() {
                Some(v) => Some(v.vectors(e)?),
                None => None,
            };
            let cs = codec.code_size();
            for (i, id) in view.ids().enumerate() {
                if hidden.hides(id, no) {
                    dropped += 1;
                    continue;
                }
                x.ids.push(id);
                x.codes.extend_from_slice(&rows[i * cs..(i + 1) * cs]);
                if let (Some(full), Some(s)) = (&full, shape) {
                    x.vectors.extend_from_slice(&full[i * s.vector_bytes..(i + 1) * s.vector_bytes]);
                }
                if x.ids.len() == cap {
                    flush(&mut seg, &codec, &mut x, &mut lists, list)?;
                }
            }
            Ok(())
        })?;
        flush(&mut seg, &codec, &mut x, &mut lists, current)?;
        let (files, _) = seg.finish()?;
        Ok((files, lists))
    })();
    let (files, lists) = match rewritten {
        Ok(r) => r,
        Err(e) => return Err(clean_up(&head, e)),
    };
    let mut list_starts = Vec::with_capacity(nlist + 1);
    let mut extents = Vec::new();
    for l in lists {
        list_starts.push(extents.len() as u32);
        extents.extend(l);
    }
    list_starts.push(extents.len() as u32);
    let directory = Directory { list_starts, extents, ..head.directory.clone() };
    let next_id = info.next_id;
    let report = ChangeReport { vectors: dropped, lists_rewritten, ntotal: info.ntotal, ..Default::default() };
    finish(head, files, directory, Deletions::default(), next_id, report)
}

/// Writes what `x` gathered of `list` as one extent (nothing when empty).
fn flush(
    seg: &mut SegmentWriter,
    codec: &crate::codec::Codec,
    x: &mut ExtentScratch,
    lists: &mut [Vec<Extent>],
    list: usize,
) -> Result<()> {
    if x.ids.is_empty() {
        return Ok(());
    }
    lists[list].push(merge::write_extent(seg, codec, x)?);
    x.clear();
    Ok(())
}

/// The memory plan of streaming `n` vectors of dimension `d` into the trained index `info`
/// (no training: the quantizer and codebooks exist), `record` bytes a vector in the runs.
pub(super) fn stream_budget(
    opts: &ChangeOptions,
    n: usize,
    d: usize,
    info: &crate::IndexInfo,
    record: usize,
) -> Result<budget::BudgetPlan> {
    budget::plan(
        opts.memory_budget.unwrap_or_else(budget::default_budget),
        &BuildShape {
            n,
            d,
            sample_elem: 4,
            nlist: info.nlist,
            hnsw_m: info.hnsw_m,
            code_size: record,
            train_rows: 0,
            min_train_rows: 0,
            chunk_cap: opts.chunk_size.max(1),
            two_level: false,
            threads: rayon::current_num_threads(),
            fan_in_cap: None,
        },
    )
}

/// Commits and fills in the report's generation and what the commit's clean-up removed.
fn finish(
    head: Head,
    written: Vec<FileEntry>,
    directory: Directory,
    deletions: Deletions,
    next_id: u64,
    mut report: ChangeReport,
) -> Result<ChangeReport> {
    let (g, garbage) = head.commit(written, directory, deletions, next_id)?;
    report.generation = Some(g);
    report.files_removed = garbage.removed.len();
    report.bytes_removed = garbage.bytes;
    Ok(report)
}

/// Removes what a failed change wrote (it is named by no manifest), keeping `e`.
fn clean_up(head: &Head, e: Error) -> Error {
    if let Err(c) = store::collect_garbage(&head.dir, &head.lock) {
        log::warn!("{}: files of the failed change were left for the next writer: {c}", head.dir.display());
    }
    e
}

/// Each list's extents of `old` followed by its extents of `new`.
pub(super) fn append_extents(old: &Directory, new: &Directory) -> Directory {
    let mut list_starts = Vec::with_capacity(old.nlist() + 1);
    let mut extents = Vec::with_capacity(old.extents.len() + new.extents.len());
    for l in 0..old.nlist() {
        list_starts.push(extents.len() as u32);
        extents.extend_from_slice(old.extents_of(l));
        extents.extend_from_slice(new.extents_of(l));
    }
    list_starts.push(extents.len() as u32);
    Directory { list_starts, extents, ..old.clone() }
}

/// The scratch area of an addition (`.write-tmp/`), removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn create(dir: &Path) -> Result<Scratch> {
        let p = dir.join(store::WRITE_STAGING);
        std::fs::create_dir_all(&p).at(&p)?;
        Ok(Scratch(p))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            log::warn!("{}: not removed ({e}); the next writer will remove it", self.0.display());
        }
    }
}
